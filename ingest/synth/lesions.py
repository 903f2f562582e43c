"""Lesions: masses (round, oval, lobulated, spiculated) and calcification clusters.

A lesion is planned once per patient (type, size, contrast, BI-RADS, outcome) and placed in each
view of the affected breast; its pixels are added to the attenuation image, and its bounding box
is the support of what was added.  Boxes are [xmin, ymin, xmax, ymax] in pixels, the max end
exclusive.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MASS_SHAPES = ("round", "oval", "lobulated", "spiculated")


@dataclass(frozen=True)
class LesionPlan:
    kind: str            # "mass" or "calcification"
    shape: str           # mass shape, or "cluster"
    size_mm: float       # mass diameter, or cluster diameter
    conspicuity: float   # 0 (subtle) .. 1 (obvious)
    birads: int          # 3, 4 or 5
    outcome: str         # "benign" or "malignant"
    specks: int          # calcifications in the cluster (0 for a mass)
    speck_mm: tuple[float, float]  # speck diameter range

    def as_dict(self) -> dict:
        d = asdict(self)
        d["size_mm"] = round(self.size_mm, 3)
        d["conspicuity"] = round(self.conspicuity, 4)
        d["speck_mm"] = [round(v, 3) for v in self.speck_mm]
        return d

    @property
    def conspicuity_label(self) -> str:
        return "Obvious" if self.conspicuity >= 0.5 else "Subtle"


def plan_lesion(rng: np.random.Generator) -> LesionPlan:
    malignant = bool(rng.random() < 0.45)
    birads = int(rng.choice([4, 5], p=[0.5, 0.5]) if malignant else rng.choice([3, 4], p=[0.6, 0.4]))
    outcome = "malignant" if malignant else "benign"
    conspicuity = float(rng.uniform(0.0, 1.0))
    if rng.random() < 0.65:
        p = [0.15, 0.25, 0.25, 0.35] if malignant else [0.35, 0.4, 0.2, 0.05]
        shape = str(rng.choice(MASS_SHAPES, p=p))
        return LesionPlan("mass", shape, float(rng.uniform(4.0, 30.0)), conspicuity, birads, outcome,
                          0, (0.0, 0.0))
    lo = float(rng.uniform(0.1, 0.3))
    return LesionPlan("calcification", "cluster", float(rng.uniform(4.0, 14.0)), conspicuity, birads,
                      outcome, int(rng.integers(5, 21)), (lo, float(rng.uniform(lo, 0.5))))


def _mass_patch(rng: np.random.Generator, plan: LesionPlan, radius: float) -> np.ndarray:
    """Projected thickness of the mass (peak 1) on a square patch centred on the mass."""
    reach = radius * (2.6 if plan.shape == "spiculated" else 1.25) + 2
    h = int(np.ceil(reach))
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float32)
    if plan.shape == "oval":
        ang = rng.uniform(0, np.pi)
        ratio = rng.uniform(0.55, 0.85)
        c, s = np.cos(ang), np.sin(ang)
        u, v = xx * c + yy * s, (-xx * s + yy * c) / ratio
        d = np.sqrt(u * u + v * v) / (radius * np.sqrt(ratio) * 1.05)
    else:
        d = np.sqrt(xx * xx + yy * yy) / radius
        if plan.shape == "lobulated":
            phi = np.arctan2(yy, xx)
            wob = np.zeros_like(phi)
            for n in rng.integers(2, 6, size=3):
                wob += 0.12 * np.cos(n * phi + rng.uniform(0, 2 * np.pi))
            d = d / (1.0 + wob)
    core = radius if plan.shape != "spiculated" else 0.65 * radius
    d = d * (radius / core)
    patch = np.sqrt(np.clip(1.0 - d * d, 0.0, 1.0)).astype(np.float32)
    if plan.shape == "spiculated":
        width = max(0.8, 0.05 * radius)
        for phi in rng.uniform(0, 2 * np.pi, size=int(rng.integers(8, 17))):
            length = radius * rng.uniform(1.4, 2.5)
            t = xx * np.cos(phi) + yy * np.sin(phi)
            perp = -xx * np.sin(phi) + yy * np.cos(phi)
            line = np.exp(-(perp / width) ** 2) * np.clip(1.0 - t / length, 0, 1) * (t > 0)
            patch = np.maximum(patch, 0.55 * line.astype(np.float32))
    return patch


def _cluster_patch(rng: np.random.Generator, plan: LesionPlan, spacing_mm: float) -> np.ndarray:
    """Calcification specks (peak about 1) on a square patch centred on the cluster."""
    radius = 0.5 * plan.size_mm / spacing_mm
    h = int(np.ceil(radius + 4))
    patch = np.zeros((2 * h + 1, 2 * h + 1), dtype=np.float32)
    yy, xx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float32)
    for _ in range(plan.specks):
        rr = radius * np.sqrt(rng.random())
        ang = rng.uniform(0, 2 * np.pi)
        cy, cx = rr * np.sin(ang), rr * np.cos(ang)
        sigma = max(0.6, 0.5 * rng.uniform(*plan.speck_mm) / spacing_mm)
        patch = np.maximum(patch, np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma * sigma)))
    return patch


def place_lesion(rng: np.random.Generator, plan: LesionPlan, image: np.ndarray, mask: np.ndarray,
                 pectoral: np.ndarray | None, skin_distance: np.ndarray, spacing_mm: float):
    """Add the lesion to ``image`` (float attenuation, canonical orientation) in place.

    Returns the lesion record (box in canonical pixels) or None when no place inside the breast
    could hold it.
    """
    if plan.kind == "mass":
        patch = _mass_patch(rng, plan, max(1.5, 0.5 * plan.size_mm / spacing_mm))
        amp = 0.035 + 0.11 * plan.conspicuity
    else:
        patch = _cluster_patch(rng, plan, spacing_mm)
        amp = 0.12 + 0.25 * plan.conspicuity
    # The box is the support of what is added: faint tails outside it are cut off.
    ys, xs = np.nonzero(patch > 0.03)
    support = np.zeros_like(patch)
    support[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = 1.0
    patch = patch * support
    h = patch.shape[0] // 2
    rows, cols = mask.shape
    occupied = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if occupied[0].size == 0:
        return None
    for _ in range(400):
        cy = int(rng.integers(occupied[0][0], occupied[0][-1] + 1))
        cx = int(rng.integers(occupied[1][0], occupied[1][-1] + 1))
        y0, y1 = cy - h + ys.min(), cy - h + ys.max() + 1
        x0, x1 = cx - h + xs.min(), cx - h + xs.max() + 1
        if y0 < 0 or x0 < 0 or y1 > rows or x1 > cols:
            continue
        if not mask[y0:y1, x0:x1].all() or skin_distance[cy, cx] < 0.5 * max(y1 - y0, x1 - x0):
            continue
        if pectoral is not None and pectoral[y0:y1, x0:x1].max() > 0.2:
            continue
        py0, px0 = cy - h, cx - h
        sy = slice(max(py0, 0), min(py0 + patch.shape[0], rows))
        sx = slice(max(px0, 0), min(px0 + patch.shape[1], cols))
        image[sy, sx] += np.float32(amp) * patch[sy.start - py0:sy.stop - py0, sx.start - px0:sx.stop - px0]
        return {"type": plan.kind, "shape": plan.shape, "size_mm": round(plan.size_mm, 3),
                "conspicuity": plan.conspicuity_label, "contrast": round(float(amp), 5),
                "birads": plan.birads, "outcome": plan.outcome,
                "center": [cy, cx], "box": [int(x0), int(y0), int(x1), int(y1)]}
    return None
