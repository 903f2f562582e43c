"""Burned-in view labels ("L CC", "R MLO") as scanners print them in a corner of the image."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


@lru_cache(maxsize=32)
def _text_mask(text: str, height: int) -> np.ndarray:
    try:
        font = ImageFont.load_default(size=max(height, 6))
    except (OSError, TypeError):           # Pillow without FreeType: small bitmap font
        font = ImageFont.load_default()
    x0, y0, x1, y1 = font.getbbox(text)
    canvas = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(canvas).text((1 - x0, 1 - y0), text, fill=255, font=font)
    return np.asarray(canvas) > 127


def text_mask(text: str, height: int) -> np.ndarray:
    """Boolean glyphs of ``text`` about ``height`` pixels high (cached)."""
    return _text_mask(text, int(height))


def burn_label(text: str, shape: tuple[int, int], chest_wall_left: bool) -> np.ndarray:
    """Boolean mask of ``text`` in the top corner opposite the chest wall."""
    rows, cols = shape
    glyphs = _text_mask(text, max(int(rows * 0.022), 6))
    out = np.zeros(shape, dtype=bool)
    gh, gw = glyphs.shape
    gh, gw = min(gh, rows), min(gw, cols)
    margin_r, margin_c = int(rows * 0.02), int(cols * 0.03)
    c0 = cols - margin_c - gw if chest_wall_left else margin_c
    c0 = max(0, c0)
    out[margin_r:margin_r + gh, c0:c0 + gw] = glyphs[:gh, :gw]
    return out
