"""What one training example is in each mode, and how a batch of them becomes tensors.

* ``pairs``: one pair sample -> ``left``, ``right`` float32 ``[B, 1, S, S]`` (one augmentation
  draw shared by both sides, so they stay aligned), ``area`` = ``meta["area"]["pair"]``.
* ``ssl``: every patch of every pair is its own example -> ``view1``, ``view2`` (two independent
  augmentations of the same patch, from one spec or one spec each: ``ViewSpecs``); keys are
  ``<pair key>/left`` and ``<pair key>/right``.
* ``labelled``: one labelled patch sample -> ``image`` and ``label`` (int64).

Every batch also holds ``is_pad`` (bool ``[B]``: a repeated sample that makes ranks equal; mask it
out of the loss), ``key`` (list of str), ``meta`` (``BatchMeta``: a sequence of dict) and
``batch_index`` (int).
"""
from __future__ import annotations

import numpy as np
import torch

from loaders.augment import (AugmentSpec, ViewSpecs, augment_batch, batch_generator, per_view,
                             scale_to_unit, unit_scale)
from loaders.metadata import BatchMeta
from shards import schema

MODES = ("pairs", "ssl", "labelled")
KINDS = {"pairs": "pair", "ssl": "pair", "labelled": "patch"}   # the stored sample each reads
SIDES = schema.PAIR_SIDES


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return mode


def check_set(shard_set, mode: str) -> None:
    """Refuse a mode that reads another kind of sample than the set holds (one clear error up
    front rather than a SchemaError at the first batch)."""
    from shards.shardset import sample_kind

    held, wanted = sample_kind(shard_set), KINDS[check_mode(mode)]
    if held is not None and held != wanted:
        use = "labelled" if held == "patch" else "pairs or ssl"
        raise ValueError(f"{shard_set.root}: holds {held} samples; mode {mode!r} reads "
                         f"{wanted} samples (use mode {use})")


def units_per_sample(mode: str) -> int:
    """How many training examples one stored sample gives (ssl: both patches of a pair)."""
    return 2 if check_mode(mode) == "ssl" else 1


def decode(mode: str, sample: dict, where: str):
    """Stored sample -> (list of uint16 images, meta, key) with the schema's decoder."""
    decoded = schema.decode(sample, where, KINDS[check_mode(mode)])
    return list(decoded.images), decoded.meta, decoded.key


def assemble(mode: str, examples: list, batch_index: int) -> dict:
    """``examples``: ``(images, meta, key, side, is_pad)`` -> a uint16 batch (numpy, picklable)."""
    if mode == "pairs":
        pixels = _stack([images for images, *_ in examples])
        keys = [key for _, _, key, _, _ in examples]
    elif mode == "ssl":
        pixels = _stack([images[side:side + 1] for images, _, _, side, _ in examples])
        keys = [f"{key}/{SIDES[side]}" for _, _, key, side, _ in examples]
    else:
        pixels = _stack([images[:1] for images, *_ in examples])
        keys = [key for _, _, key, _, _ in examples]
    metas = [meta for _, meta, _, _, _ in examples]
    return _columns(mode, pixels, keys, metas, [pad for *_, pad in examples], batch_index)


def _columns(mode: str, pixels, keys, metas, pads, batch_index, text=None) -> dict:
    """The batch dict; ``text``: ``metas`` as the JSON array they were parsed from."""
    out = {"pixels": pixels,
           "bits": np.array([int(m["bits"]) for m in metas], dtype=np.int64),
           "is_pad": np.array(pads, dtype=bool),
           "key": keys, "meta": BatchMeta(metas, text), "batch_index": int(batch_index)}
    if mode == "pairs":
        out["area"] = np.array([float(m["area"]["pair"]) for m in metas], dtype=np.float32)
    if mode == "labelled":
        out["label"] = np.array([int(m["label"]) for m in metas], dtype=np.int64)
    return out


SKIPPED = "skipped"   # batch column (removed by the loader): the samples left out of it


def decode_batch(mode: str, items: list, batch_index: int, alloc=None, *, size=None,
                 on_error: str = "raise") -> dict:
    """``items``: ``(stored sample, side, is_pad)`` -> the uint16 batch ``assemble`` makes from
    ``decode``'s output, decoded straight into the batch array by ``schema.decode_batch``.
    ``alloc(shape, dtype)``: where the uint16 pixels go (a worker's shared output slot); default
    new memory. ``size``: the shard set's patch side (a sample claiming another is refused
    before decoding).

    ``on_error="raise"``: a sample that does not meet the schema raises its error naming the
    shard and sample. ``"skip"``: such samples (and those the reader could not read) are left
    out; their slots repeat a good sample of the batch flagged ``is_pad`` (so the batch keeps
    its shape and every rank its number of batches), and ``out["skipped"]`` lists them as
    ``{"key", "shard", "reason"}``."""
    check_mode(mode)
    kind = KINDS[mode]
    once: dict = {}

    def to_numpy(shape):   # one slot allocation even if the batch is decoded twice
        if shape not in once:
            once[shape] = alloc(shape, torch.uint16).numpy()
        return once[shape]

    skipped: list = []
    for attempt in range(2):
        if on_error == "skip":
            items, more = _without_bad(kind, items, size, check=attempt > 0)
            skipped += more
        samples = [sample for sample, _, _ in items]
        images = [(side,) for _, side, _ in items] if mode == "ssl" else None
        try:
            batch = schema.decode_batch(kind, samples, images,
                                        alloc=None if alloc is None else to_numpy, size=size)
            break
        except schema.SchemaError:
            if on_error != "skip" or attempt:
                raise
    keys = batch.keys
    if mode == "ssl":
        keys = [f"{key}/{SIDES[side]}" for key, (_, side, _) in zip(keys, items)]
    out = _columns(mode, batch.pixels, keys, batch.metas, [pad for *_, pad in items],
                   batch_index, batch.text)
    if on_error == "skip":
        out[SKIPPED] = skipped
    return out


def _without_bad(kind: str, items: list, size, check: bool) -> tuple[list, list]:
    """``items`` with the unreadable samples (the reader's stand-ins; with ``check``, also
    those ``schema.decode`` refuses) replaced by padding, and what was left out."""
    from loaders.reading import SKIP_FIELD

    bad: dict[int, str] = {}
    for i, (sample, _, _) in enumerate(items):
        if SKIP_FIELD in sample:
            bad[i] = sample[SKIP_FIELD]
        elif check:
            try:
                schema.decode(sample, sample.get("__where__", ""), kind, size)
            except schema.SchemaError as exc:
                bad[i] = str(exc)
    if not bad:
        return items, []
    # padding that repeats a bad sample is replaced too, but only real slots count as skipped
    skipped = [{"key": items[i][0].get("__key__", "?"), "shard": items[i][0].get("__where__", ""),
                "reason": reason} for i, reason in bad.items() if not items[i][2]]
    good = [item for i, item in enumerate(items) if i not in bad]
    if good:
        stand_in = good[0][:2]
    else:   # nothing readable in the batch: blank padding keeps its shape
        stand_in = (_blank_sample(kind, size), 0)
    return [(*stand_in, True) if i in bad else item for i, item in enumerate(items)], skipped


def _blank_sample(kind: str, size) -> dict:
    """A zero sample of ``kind`` (only ever handed out as padding)."""
    size = int(size or 1)
    blank = np.zeros((size, size), np.uint16)
    if kind == "patch":
        meta = schema.patch_meta(size=size, bits=16, task="", label=0, split="")
        return schema.encode_patch("padding", blank, meta, fmt="raw")
    meta = schema.pair_meta(size=size, bits=16, dataset="", patient="", study="", view="",
                            row=0, col=0, y0=0, x0=0, background=(1, 1), area=(0, 0, 0),
                            split="")
    return schema.encode_pair("padding", blank, blank, meta, fmt="raw")


def _stack(examples: list[list[np.ndarray]]) -> np.ndarray:
    """``[B, C, H, W]`` from B lists of C images, written once into one array (np.stack of
    stacks costs two copies and a temporary per example)."""
    first = examples[0][0]
    out = np.empty((len(examples), len(examples[0])) + first.shape, dtype=first.dtype)
    for i, images in enumerate(examples):
        for c, image in enumerate(images):
            out[i, c] = image
    return out


def finish(mode: str, raw: dict, spec: AugmentSpec | ViewSpecs, *, seed: int, epoch: int,
           rank: int, device=None, alloc=None) -> dict:
    """uint16 batch -> float32 batch on ``device``, augmented (the torch backend's last step).
    ``spec``: one ``AugmentSpec`` for every view, or (ssl) ``ViewSpecs``, one per view.

    ``alloc(shape, dtype)``: on the CPU, where the augmented pixels are written: one float32
    block ``[views, B, C, S, S]`` (views: 2 in ssl mode, else 1) that the output tensors are
    views of. A DataLoader worker passes its shared-memory output slot; default: new memory."""
    pixels, bits = raw["pixels"], torch.from_numpy(raw["bits"])
    on_cpu = device is None or torch.device(device).type == "cpu"
    top = None
    if on_cpu:   # the scaling happens inside the augmentation (one pass less)
        x, top = torch.from_numpy(pixels), unit_scale(bits)
    else:
        x = scale_to_unit(torch.from_numpy(pixels).to(device, non_blocking=True), bits)
    views = 2 if mode == "ssl" else 1
    specs = per_view(spec, views)
    block = None
    if on_cpu and alloc is not None:   # every view has the same size (``resolve_views``)
        block = alloc((views, x.shape[0], x.shape[1], specs[0].size, specs[0].size),
                      torch.float32)
    j = raw["batch_index"]
    out = {k: raw[k] for k in ("key", "meta", "batch_index")}
    out["is_pad"] = torch.from_numpy(raw["is_pad"])
    augmented = [augment_batch(x, specs[k], batch_generator(seed, epoch, rank, j, view),
                               out=None if block is None else block[k], top=top)
                 for k, view in enumerate((1, 2) if mode == "ssl" else (0,))]
    if mode == "pairs":
        out["left"], out["right"] = augmented[0][:, :1], augmented[0][:, 1:]
        out["area"] = torch.from_numpy(raw["area"])
    elif mode == "ssl":
        out["view1"], out["view2"] = augmented
    else:
        out["image"] = augmented[0]
        out["label"] = torch.from_numpy(raw["label"])
    return out
