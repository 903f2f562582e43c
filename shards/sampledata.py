"""Tissue-like synthetic pair samples for tests and benchmarks (not for training).

Patches are power-law (1/f^3 power spectrum) noise scaled into 12-bit-ish mammography values with
a background corner, so PNG compresses them about as well as real tissue; uniform random pixels
would not compress at all and would mislead size and speed figures.
"""
from __future__ import annotations

import numpy as np

from shards import schema


def tissue_patch(rng: np.random.Generator, size: int, *, exponent: float = 3.0,
                 bits: int = 12) -> np.ndarray:
    """A ``size x size`` uint16 patch of 1/f^exponent noise in ``[0, 2**bits)``, some background."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0 / size
    amplitude = radius ** (-exponent / 2.0)
    phase = rng.uniform(0.0, 2.0 * np.pi, amplitude.shape)
    field = np.fft.irfft2(amplitude * np.exp(1j * phase), s=(size, size))
    field = (field - field.min()) / (np.ptp(field) or 1.0)
    top = 2 ** bits - 1
    image = 0.25 * top + 0.6 * top * field + rng.normal(0.0, 0.004 * top, field.shape)
    # A corner of dark background, as at the breast's edge.
    yy, xx = np.mgrid[0:size, 0:size]
    image[(yy + xx) < rng.uniform(0.0, 0.6) * size] = 0.0
    return np.clip(np.rint(image), 0, top).astype(np.uint16)


def pair_meta(size: int, split: str = "train", number: int = 0) -> dict:
    area = 0.01 * (number % 5)
    return schema.pair_meta(size=size, bits=12, dataset="synthetic", patient=f"p{number // 8}",
                            study=f"1.2.3.{number // 8}", view="CC", row=number % 8, col=0,
                            y0=0, x0=0, background=(0.1, 0.2), area=(0.0, area, area),
                            split=split)


def pair_samples(count: int, size: int, fmt: str = "png", *, seed: int = 0,
                 split: str = "train", start: int = 0) -> list[dict]:
    """``count`` encoded pair samples with keys ``pair-<number>``."""
    rng = np.random.default_rng(seed)
    samples = []
    for number in range(start, start + count):
        left, right = tissue_patch(rng, size), tissue_patch(rng, size)
        samples.append(schema.encode_pair(schema.make_key("pair", f"{number:06d}"), left, right,
                                          pair_meta(size, split, number), fmt=fmt))
    return samples
