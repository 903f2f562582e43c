"""What one training example is in each mode, and how a batch of them becomes tensors.

* ``pairs``: one pair sample -> ``left``, ``right`` float32 ``[B, 1, S, S]`` (one augmentation
  draw shared by both sides, so they stay aligned), ``area`` = ``meta["area"]["pair"]``.
* ``ssl``: every patch of every pair is its own example -> ``view1``, ``view2`` (two independent
  augmentations of the same patch); keys are ``<pair key>/left`` and ``<pair key>/right``.
* ``labelled``: one labelled patch sample -> ``image`` and ``label`` (int64).

Every batch also holds ``is_pad`` (bool ``[B]``: a repeated sample that makes ranks equal; mask it
out of the loss), ``key`` (list of str), ``meta`` (``BatchMeta``: a sequence of dict) and
``batch_index`` (int).
"""
from __future__ import annotations

import json

import numpy as np
import torch

from loaders.augment import (AugmentSpec, augment_batch, batch_generator, scale_to_unit,
                             unit_scale)
from loaders.metadata import BatchMeta
from shards import schema

MODES = ("pairs", "ssl", "labelled")
SIDES = ("left", "right")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return mode


def units_per_sample(mode: str) -> int:
    """How many training examples one stored sample gives (ssl: both patches of a pair)."""
    return 2 if check_mode(mode) == "ssl" else 1


def decode(mode: str, sample: dict, where: str):
    """Stored sample -> (list of uint16 images, meta) with the schema's decoder."""
    if mode == "labelled":
        patch = schema.decode_patch(sample, where)
        return [patch.image], patch.meta, patch.key
    pair = schema.decode_pair(sample, where)
    return [pair.left, pair.right], pair.meta, pair.key


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


# what each mode reads from a stored sample: its kind, required fields, image fields by channel
_LAYOUT = {"pairs": ("pair", schema.PAIR_REQUIRED, ("left.", "right.")),
           "ssl": ("pair", schema.PAIR_REQUIRED, ("left.", "right.")),
           "labelled": ("patch", schema.PATCH_REQUIRED, ("",))}


def decode_batch(mode: str, items: list, batch_index: int, alloc=None) -> dict:
    """``items``: ``(stored sample, side, is_pad)`` -> the uint16 batch ``assemble`` makes from
    ``decode``'s output, decoded straight into the batch array.

    The batch's JSON is parsed in one call and raw pixels are copied from the read buffer into
    the batch once. A sample that does not meet the schema on this path (unreadable JSON, a
    missing field, a wrong kind, size or byte count, an undecodable PNG) goes through ``decode``,
    the schema's decoder, which raises its error naming the shard and sample. ``alloc(shape,
    dtype)``: where the uint16 pixels go (a worker's shared output slot); default new memory."""
    kind, required, prefixes = _LAYOUT[check_mode(mode)]
    samples = [sample for sample, _, _ in items]
    metas, text = _load_metas(samples)
    size = _batch_size_px(metas, samples, mode)
    channels = 2 if mode == "pairs" else 1
    shape = (len(items), channels, size, size)
    pixels = np.empty(shape, np.uint16) if alloc is None else alloc(shape, torch.uint16).numpy()
    keys = []
    for i, (sample, side, _) in enumerate(items):
        meta = metas[i] if metas is not None else None
        wanted = prefixes if mode != "ssl" else prefixes[side:side + 1]
        if not (isinstance(meta, dict) and meta.get("kind") == kind
                and all(f in meta for f in required) and meta["size"] == size
                and all(_write_image(sample, p, size, pixels[i, c]) for c, p in
                        enumerate(wanted))):
            images, meta, _ = decode(mode, sample, sample.get("__where__", ""))
            images = images if mode != "ssl" else images[side:side + 1]
            for c, image in enumerate(images):
                pixels[i, c] = image
            if metas is None:
                metas = [None] * len(items)
            metas[i], text = meta, None
        key = sample.get("__key__", "?")
        keys.append(key if mode != "ssl" else f"{key}/{SIDES[side]}")
    return _columns(mode, pixels, keys, metas, [pad for *_, pad in items], batch_index, text)


def _load_metas(samples: list):
    """``(metas, text)``: every sample's metadata from one ``json.loads`` of ``text``, the
    samples' JSON joined into one array; ``(None, None)`` when that fails (then each sample
    goes through the schema's decoder, which names the sample at fault)."""
    try:
        text = b"[" + b",".join(sample["json"] for sample in samples) + b"]"
        metas = json.loads(text)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        return None, None
    return (metas, text) if len(metas) == len(samples) else (None, None)


def _batch_size_px(metas, samples, mode) -> int:
    meta = metas[0] if metas is not None else None
    if isinstance(meta, dict) and isinstance(meta.get("size"), int):
        return meta["size"]
    images, _, _ = decode(mode, samples[0], samples[0].get("__where__", ""))
    return images[0].shape[0]


def _write_image(sample: dict, prefix: str, size: int, out: np.ndarray) -> bool:
    """Decode one stored image into ``out``; False when it is not there or not ``size``."""
    data = sample.get(prefix + "u16")
    if data is not None:
        if len(data) != 2 * size * size:
            return False
        out[...] = np.frombuffer(data, dtype="<u2").reshape(size, size)
        return True
    data = sample.get(prefix + "png")
    if data is None:
        return False
    try:
        image = schema.decode_png16(data)
    except Exception:   # the schema's decoder reports it with the sample's name
        return False
    if image.shape != (size, size):
        return False
    out[...] = image
    return True


def _stack(examples: list[list[np.ndarray]]) -> np.ndarray:
    """``[B, C, H, W]`` from B lists of C images, written once into one array (np.stack of
    stacks costs two copies and a temporary per example)."""
    first = examples[0][0]
    out = np.empty((len(examples), len(examples[0])) + first.shape, dtype=first.dtype)
    for i, images in enumerate(examples):
        for c, image in enumerate(images):
            out[i, c] = image
    return out


def finish(mode: str, raw: dict, spec: AugmentSpec, *, seed: int, epoch: int, rank: int,
           device=None, alloc=None) -> dict:
    """uint16 batch -> float32 batch on ``device``, augmented (the torch backend's last step).

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
    block = None
    if on_cpu and alloc is not None:
        block = alloc((views, x.shape[0], x.shape[1], spec.size, spec.size), torch.float32)
    j = raw["batch_index"]
    out = {k: raw[k] for k in ("key", "meta", "batch_index")}
    out["is_pad"] = torch.from_numpy(raw["is_pad"])
    augmented = [augment_batch(x, spec, batch_generator(seed, epoch, rank, j, view),
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
