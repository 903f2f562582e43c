"""Box conventions and the box transforms that follow an image through normalisation.

Two conventions meet here:

* source annotations give ``[x0, y0, x1, y1]`` in the pixel coordinates of the original image;
* everything inside the project uses ``[y0, x0, y1, x1]`` (end exclusive) in the normalised image.

Coordinates are continuous pixel-edge coordinates: the image of width ``W`` spans ``[0, W]``, so a
horizontal mirror maps ``x`` to ``W - x`` and a scale by ``s`` maps ``x`` to ``s * x``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def as_boxes(boxes) -> np.ndarray:
    """Boxes as a float64 (N, 4) array; accepts one box, a list of boxes or an array."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    arr = np.atleast_2d(arr)
    if arr.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 coordinates, got shape {arr.shape}")
    return arr


def xyxy_to_yxyx(boxes) -> np.ndarray:
    """``[x0, y0, x1, y1]`` → ``[y0, x0, y1, x1]``."""
    return as_boxes(boxes)[:, [1, 0, 3, 2]]


def box_areas(boxes) -> np.ndarray:
    """Areas of ``[y0, x0, y1, x1]`` boxes; inverted boxes count as empty."""
    b = as_boxes(boxes)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def round_boxes(boxes) -> np.ndarray:
    """Integer boxes that cover the float boxes (floor the start, ceil the end)."""
    b = as_boxes(boxes)
    out = np.empty(b.shape, dtype=np.int64)
    out[:, :2] = np.floor(b[:, :2] + 1e-9)
    out[:, 2:] = np.ceil(b[:, 2:] - 1e-9)
    return out


@dataclass(frozen=True)
class BoxMap:
    """Maps original ``[x0, y0, x1, y1]`` boxes to normalised ``[y0, x0, y1, x1]`` boxes.

    The steps are applied in the order of the pixel pipeline: optional horizontal mirror of the
    source image (width ``source_width``), crop (subtract ``crop_origin`` = (y, x)), scale by
    ``scale`` = (sy, sx), clip to ``extent`` = (height, width) of the resized image.
    """

    source_width: float
    flipped: bool
    crop_origin: tuple[float, float]
    scale: tuple[float, float]
    extent: tuple[float, float]

    def __call__(self, boxes_xyxy) -> np.ndarray:
        b = as_boxes(boxes_xyxy)
        x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
        if self.flipped:
            x0, x1 = self.source_width - x1, self.source_width - x0
        cy, cx = self.crop_origin
        sy, sx = self.scale
        out = np.stack([(y0 - cy) * sy, (x0 - cx) * sx, (y1 - cy) * sy, (x1 - cx) * sx], axis=1)
        h, w = self.extent
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, h)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, w)
        return out

    def to_dict(self) -> dict:
        return {
            "source_width": float(self.source_width),
            "flipped": bool(self.flipped),
            "crop_origin": [float(v) for v in self.crop_origin],
            "scale": [float(v) for v in self.scale],
            "extent": [float(v) for v in self.extent],
        }


def clamp_box(center_y: float, center_x: float, size: int, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """A ``size x size`` integer box centred as near as possible on a point, inside ``shape``."""
    h, w = shape
    if size > h or size > w:
        raise ValueError(f"patch size {size} does not fit an image of shape {shape}")
    y0 = int(round(center_y - size / 2))
    x0 = int(round(center_x - size / 2))
    y0 = min(max(y0, 0), h - size)
    x0 = min(max(x0, 0), w - size)
    return (y0, x0, y0 + size, x0 + size)
