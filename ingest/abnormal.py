"""The abnormal area A of a patch (paper, equation 5).

    A(patch, roi) = |patch ∩ roi| / min(|patch|, |roi|)

so a patch lying inside an ROI gives 1, an ROI lying inside a patch gives 1, a partial overlap a
fraction and no overlap 0. Boxes are ``[y0, x0, y1, x1]``, end exclusive. An empty box (zero
area) overlaps nothing: A = 0. A pair's A is the maximum over both sides and all their ROIs.
"""
from __future__ import annotations

import numpy as np

from ingest.geometry import as_boxes, box_areas


def abnormal_areas(patch_boxes, roi_boxes) -> np.ndarray:
    """``(N, M)`` matrix of A for N patches and M ROIs (vectorised)."""
    p = as_boxes(patch_boxes)[:, None, :]
    r = as_boxes(roi_boxes)[None, :, :]
    h = np.clip(np.minimum(p[..., 2], r[..., 2]) - np.maximum(p[..., 0], r[..., 0]), 0, None)
    w = np.clip(np.minimum(p[..., 3], r[..., 3]) - np.maximum(p[..., 1], r[..., 1]), 0, None)
    inter = h * w
    smaller = np.minimum(box_areas(patch_boxes)[:, None], box_areas(roi_boxes)[None, :])
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def abnormal_area(patch_box, roi_box) -> float:
    """A for one patch and one ROI."""
    return float(abnormal_areas([patch_box], [roi_box])[0, 0])


def max_area(patch_boxes, roi_boxes) -> np.ndarray:
    """``(N,)`` A of each patch against the worst ROI of one side (0 without ROIs)."""
    n = len(as_boxes(patch_boxes))
    rois = as_boxes(roi_boxes)
    if len(rois) == 0:
        return np.zeros(n)
    return abnormal_areas(patch_boxes, rois).max(axis=1)


def pair_areas(patch_boxes, left_rois, right_rois) -> dict[str, np.ndarray]:
    """``{"left": (N,), "right": (N,), "pair": (N,)}``: per side, and the pair's max over sides."""
    left = max_area(patch_boxes, left_rois)
    right = max_area(patch_boxes, right_rois)
    return {"left": left, "right": right, "pair": np.maximum(left, right)}
