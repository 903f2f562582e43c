"""Blood vessels: a few thin, meandering bright lines running from the chest wall towards the
nipple.  Drawn per breast and view (the same in every study of the patient), in the breast frame,
then carried into the image by its positioning."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .anatomy import BreastShape
from .positioning import Transform, breast_to_image


def vessel_paths(rng: np.random.Generator, shape: BreastShape, spacing_mm: float):
    """[(points (N, 2) breast-frame (row, col), width px, contrast)] for one breast."""
    paths = []
    b = 0.5 * (shape.half_height_up + shape.half_height_down)
    t = np.deg2rad(shape.tilt_deg)
    for _ in range(int(rng.integers(1, 5))):
        start_row = shape.center_row + rng.uniform(-0.7, 0.7) * b
        length = shape.depth * rng.uniform(0.45, 0.9)
        end_row = shape.center_row + np.sin(t) * length + rng.uniform(-0.25, 0.25) * b
        u = np.linspace(0.0, length, 96)
        s = u / length
        v = start_row + (end_row - start_row) * s
        for wave, amp in ((1.2, 0.06), (0.6, 0.025), (0.3, 0.008)):   # gentle meander
            v += amp * rng.uniform(0.5, 1.0) * b * np.sin(
                2 * np.pi * u / (wave * rng.uniform(0.7, 1.3) * length) + rng.uniform(0, 2 * np.pi))
        if shape.view == "MLO":
            u = u + 0.3 * shape.pectoral_width * (1 - s) * (v < shape.pectoral_height * 0.6)
        width = max(1.0, rng.uniform(0.8, 2.2) / spacing_mm)
        paths.append((np.stack([v, u], axis=1), float(width), float(rng.uniform(0.01, 0.025))))
    return paths


def draw_vessels(paths, tf: Transform, shape: tuple[int, int]) -> np.ndarray:
    """Float32 image of the vessels in canonical image coordinates (0 elsewhere)."""
    rows, cols = shape
    canvas = Image.new("F", (cols, rows), 0.0)
    draw = ImageDraw.Draw(canvas)
    for points, width, contrast in paths:
        p = breast_to_image(points, tf)
        xy = [(float(c), float(r)) for r, c in p]
        # Tapering towards the nipple, in four pieces; two nested strokes give a soft edge.
        n = len(xy)
        for k in range(4):
            piece = xy[k * n // 4: min(n, (k + 1) * n // 4 + 1)]
            w = width * (1.0 - 0.18 * k)
            draw.line(piece, fill=0.5 * contrast, width=max(1, round(w * 1.7)), joint="curve")
            draw.line(piece, fill=contrast, width=max(1, round(w)), joint="curve")
    return np.array(canvas, dtype=np.float32)
