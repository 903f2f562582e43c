"""Anatomy of a compressed breast in its breast frame: outline, skin, nipple, pectoral muscle.

All lengths are in image pixels of the breast frame (chest wall along col 0, nipple towards
higher cols).  A shape is drawn once per patient and view and shared by the two breasts (with a
small asymmetry); each exposure then changes it through its compression.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


MLO_UPPER_L1 = 0.4     # share of the L1 norm in the MLO's upper contour


def _upper_contour_x(y: float) -> float:
    """x in [0, 1] where the MLO upper contour crosses height y (normalised units)."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        x = 0.5 * (lo + hi)
        r = np.hypot(x, y)
        if r + MLO_UPPER_L1 * (x + y - r) > 1.0:
            hi = x
        else:
            lo = x
    return lo


@dataclass(frozen=True)
class BreastShape:
    view: str                 # "CC" or "MLO"
    depth: float              # a: chest wall to nipple along the breast axis (px)
    center_row: float         # row where the breast axis meets the chest wall
    half_height_up: float     # b above the axis (towards row 0)
    half_height_down: float   # b below the axis
    chest_offset: float       # the outline's centre lies this far behind the chest wall
    tilt_deg: float           # breast axis direction (positive: nipple points down)
    nipple_radius: float
    pectoral_width: float     # MLO: pectoral width along row 0 (0 for CC)
    pectoral_height: float    # MLO: pectoral height along col 0
    pectoral_bulge: float     # convexity of the pectoral edge

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def mirrored_variant(self, rng: np.random.Generator) -> "BreastShape":
        """The other breast of the same patient: the same shape within a few percent."""
        j = lambda: float(rng.uniform(0.97, 1.03))  # noqa: E731
        return BreastShape(self.view, self.depth * j(), self.center_row, self.half_height_up * j(),
                           self.half_height_down * j(), self.chest_offset, self.tilt_deg,
                           self.nipple_radius, self.pectoral_width * j(), self.pectoral_height * j(),
                           self.pectoral_bulge)


def sample_shape(rng: np.random.Generator, view: str, shape: tuple[int, int], size: float) -> BreastShape:
    """Draw a breast outline for ``view``; ``size`` in [0, 1] scales the whole breast."""
    rows, cols = shape
    s = 0.88 + 0.12 * size
    if view == "CC":
        depth = cols * rng.uniform(0.62, 0.78) * s
        b = rows * rng.uniform(0.36, 0.43) * s
        return BreastShape("CC", depth, rows * rng.uniform(0.47, 0.53), b * rng.uniform(0.95, 1.05),
                           b * rng.uniform(0.95, 1.05), 0.12 * depth, float(rng.uniform(-3, 3)),
                           rows * rng.uniform(0.008, 0.012), 0.0, 0.0, 0.0)
    depth = cols * rng.uniform(0.66, 0.80) * s
    center = rows * rng.uniform(0.42, 0.50)
    b_up = rows * rng.uniform(0.58, 0.66) * s
    b_down = rows * rng.uniform(0.42, 0.48) * s
    tilt = float(rng.uniform(6, 14))
    offset = 0.12 * depth
    # Width of the breast along the top edge: the pectoral muscle must fit inside it.
    top_width = depth * _upper_contour_x(min(center / b_up, 0.95)) - offset
    pec_w = min(cols * rng.uniform(0.18, 0.32), 0.75 * max(top_width, 0.1 * cols))
    pec_h = rows * rng.uniform(0.45, 0.70)
    return BreastShape("MLO", depth, center, b_up, b_down, offset, tilt,
                       rows * rng.uniform(0.008, 0.012), float(pec_w), float(pec_h),
                       float(rng.uniform(0.2, 0.6)))


@dataclass
class Geometry:
    mask: np.ndarray          # bool: inside the breast (skin included)
    skin_distance: np.ndarray  # approximate distance to the skin line (px), >= 0 inside
    pectoral: np.ndarray | None  # float in [0, 1]: pectoral muscle weight (MLO only)
    nipple: np.ndarray        # bool: the nipple


def breast_geometry(rows_b: np.ndarray, cols_b: np.ndarray, shape: BreastShape,
                    compression: float, wobble: np.ndarray | None = None) -> Geometry:
    """Evaluate the outline at breast-frame coordinates (arrays of equal shape).

    ``wobble`` (small, smooth, around 0) makes the skin line irregular.
    """
    f32 = np.float32
    t = np.deg2rad(shape.tilt_deg)
    ct, st = f32(np.cos(t)), f32(np.sin(t))
    du = cols_b + f32(shape.chest_offset)
    dv = rows_b - f32(shape.center_row)
    along = du * ct + dv * st            # along the breast axis
    across = dv * ct - du * st
    k_a = f32(compression)               # a harder compression spreads the breast
    k_b = f32(np.sqrt(compression))
    a = f32(shape.depth + shape.chest_offset) * k_a
    inv_b = np.where(across < 0, f32(1.0 / (shape.half_height_up * k_b)),
                     f32(1.0 / (shape.half_height_down * k_b)))
    x = along * f32(1.0 / a)
    y = across * inv_b
    rho = np.sqrt(x * x + y * y)
    if shape.view == "MLO":
        # The upper contour of an MLO runs almost straight from the axilla to the nipple: there
        # the radius blends the L1 and L2 norms (a rounded diamond).
        upper = across < 0
        rho[upper] += f32(MLO_UPPER_L1) * (np.abs(x[upper]) + np.abs(y[upper]) - rho[upper])
    if wobble is not None:
        rho *= f32(1.0) + wobble
    r = np.sqrt(along * along + across * across)
    dist = (f32(1.0) - rho) * r / np.maximum(rho, f32(1e-3))
    nr = f32(shape.nipple_radius)
    # The nipple in profile: a small nub on the breast axis, joined to the outline even where
    # the skin line is irregular.
    nipple = (((along - a + f32(0.35) * nr) ** 2 + across * across) < nr * nr) | (
        (np.abs(across) < f32(0.7) * nr) & (along > f32(0.9) * a) & (along < a))
    mask = (rho <= 1.0) | nipple
    pec = None
    if shape.view == "MLO":
        pu = np.maximum(cols_b, 0) * f32(1.0 / shape.pectoral_width)
        pv = (rows_b + f32(0.05 * shape.pectoral_height)) * f32(1.0 / shape.pectoral_height)
        q = pu + pv - f32(shape.pectoral_bulge) * pu * np.clip(pv, 0, 1)
        pec = np.clip((f32(1.0) - q) * f32(60.0), -30, 30)
        pec = f32(1.0) / (f32(1.0) + np.exp(-pec))
        mask |= pec > 0.5
        dist = np.where(pec > 0.5, np.maximum(dist, f32(0.0)), dist)
    dist = np.where(nipple, np.maximum(dist, f32(0.0)), dist)
    return Geometry(mask=mask, skin_distance=dist, pectoral=pec, nipple=nipple)
