"""What one training example is in each mode, and how a batch of them becomes tensors.

* ``pairs``: one pair sample -> ``left``, ``right`` float32 ``[B, 1, S, S]`` (one augmentation
  draw shared by both sides, so they stay aligned), ``area`` = ``meta["area"]["pair"]``.
* ``ssl``: every patch of every pair is its own example -> ``view1``, ``view2`` (two independent
  augmentations of the same patch); keys are ``<pair key>/left`` and ``<pair key>/right``.
* ``labelled``: one labelled patch sample -> ``image`` and ``label`` (int64).

Every batch also holds ``is_pad`` (bool ``[B]``: a repeated sample that makes ranks equal; mask it
out of the loss), ``key`` (list of str), ``meta`` (list of dict) and ``batch_index`` (int).
"""
from __future__ import annotations

import numpy as np
import torch

from loaders.augment import AugmentSpec, augment_batch, batch_generator, scale_to_unit
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
    out = {"pixels": pixels,
           "bits": np.array([int(m["bits"]) for m in metas], dtype=np.int64),
           "is_pad": np.array([pad for *_, pad in examples], dtype=bool),
           "key": keys, "meta": metas, "batch_index": int(batch_index)}
    if mode == "pairs":
        out["area"] = np.array([float(m["area"]["pair"]) for m in metas], dtype=np.float32)
    if mode == "labelled":
        out["label"] = np.array([int(m["label"]) for m in metas], dtype=np.int64)
    return out


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
           device=None, shared: bool = False) -> dict:
    """uint16 batch -> float32 batch on ``device``, augmented (the torch backend's last step).

    ``shared``: write the augmented batches straight into shared memory (a DataLoader worker's
    output is moved there anyway; allocated there, it is not copied)."""
    pixels = raw["pixels"]
    if device is not None and torch.device(device).type != "cpu":
        pixels = torch.from_numpy(pixels).to(device, non_blocking=True)
    x = scale_to_unit(pixels, torch.from_numpy(raw["bits"]))
    j = raw["batch_index"]
    out = {k: raw[k] for k in ("key", "meta", "batch_index")}
    out["is_pad"] = torch.from_numpy(raw["is_pad"])
    if mode == "pairs":
        x = augment_batch(x, spec, batch_generator(seed, epoch, rank, j), shared=shared)
        out["left"], out["right"] = x[:, :1], x[:, 1:]
        out["area"] = torch.from_numpy(raw["area"])
    elif mode == "ssl":
        out["view1"] = augment_batch(x, spec, batch_generator(seed, epoch, rank, j, 1),
                                     shared=shared)
        out["view2"] = augment_batch(x, spec, batch_generator(seed, epoch, rank, j, 2),
                                     shared=shared)
    else:
        out["image"] = augment_batch(x, spec, batch_generator(seed, epoch, rank, j),
                                     shared=shared)
        out["label"] = torch.from_numpy(raw["label"])
    return out
