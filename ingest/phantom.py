"""Small breast-like phantoms for tests and benchmarks of the pixel steps.

Not a mammogram simulator (that is ``ingest.synth``): a half ellipse on the chest-wall edge with
smooth random texture, thinning towards the skin line, on a dark noisy background. Enough
structure for thresholding, orientation and intensity-based registration to be meaningful.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def phantom(shape=(400, 320), seed: int = 0, chest_wall: str = "left") -> tuple[np.ndarray, np.ndarray]:
    """``(image, mask)``: float32 image in [0, 1] with the breast bright, and the breast mask."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = h * (0.5 + 0.03 * rng.standard_normal())
    ry = h * (0.40 + 0.02 * rng.standard_normal())
    rx = w * (0.70 + 0.03 * rng.standard_normal())
    r = np.sqrt(((yy - cy) / ry) ** 2 + (xx / rx) ** 2)
    mask = r < 1.0
    thickness = np.sqrt(np.clip(1.0 - r ** 2, 0, 1))
    texture = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(h, w) / 60)
    texture /= texture.std() + 1e-6
    fine = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(h, w) / 250)
    fine /= fine.std() + 1e-6
    tissue = 0.45 + 0.12 * texture + 0.05 * fine + 0.25 * thickness
    image = np.where(mask, tissue, 0.04) + 0.01 * rng.standard_normal(shape).astype(np.float32)
    image = np.clip(image, 0, 1).astype(np.float32)
    if chest_wall == "right":
        return image[:, ::-1].copy(), mask[:, ::-1].copy()
    if chest_wall != "left":
        raise ValueError(f"chest_wall must be 'left' or 'right', got {chest_wall!r}")
    return image, mask


def to_uint16(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A phantom as a normalised image would be: breast in [1, 65535], background 0."""
    out = np.zeros(image.shape, np.uint16)
    v = image[mask]
    out[mask] = np.rint(1 + (v - v.min()) / max(float(np.ptp(v)), 1e-6) * 65534).astype(np.uint16)
    return out
