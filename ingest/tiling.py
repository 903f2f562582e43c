"""Grid tiling of a registered pair, with the background and border rules.

Both images lie on one grid (the moving side was resampled onto the fixed side). Tiles of
``size x size`` are laid at ``stride`` (default ``size``) from the top-left corner; a tile that
would cross the bottom or right edge is not made. A tile pair is dropped when

* ``background``: either side has more than ``max_background`` of its pixels outside the breast;
* ``border``: the breast masks disagree on more than ``max_border_xor`` of the tile's pixels
  (mask XOR), i.e. the two skin lines are far apart there and the pair would compare breast with
  air.

Fractions come from summed-area tables (``window_sums``: one cumulative sum down the columns
per mask, then only the table's rows at tile edges), so the cost does not depend on the number
of tiles' pixels; no per-pixel Python.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass
class TilingResult:
    size: int
    stride: int
    rows: np.ndarray          # (N,) grid row index of each kept tile
    cols: np.ndarray          # (N,) grid column index
    boxes: np.ndarray         # (N, 4) int [y0, x0, y1, x1], end exclusive
    background: np.ndarray    # (N, 2) background fraction, [:, 0] left, [:, 1] right
    xor: np.ndarray           # (N,) fraction of mask XOR inside the tile
    total: int                # tiles on the grid
    dropped: dict = field(default_factory=dict)   # {"background": n, "border": n}

    def __len__(self) -> int:
        return len(self.rows)


def integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: ``S[y, x] = mask[:y, :x].sum()``."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1, out=s[1:, 1:])
    return s


def box_sums(table: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``size x size`` boxes with top-left corners ``(y0, x0)`` from a summed-area table."""
    y1, x1 = y0 + size, x0 + size
    return table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]


def window_sums(mask: np.ndarray, y0: np.ndarray, x0: np.ndarray, size: int) -> np.ndarray:
    """``box_sums(integral(mask), y0, x0, size)``, the same integers, for a fraction of the cost:
    the summed-area table is only needed at the tiles' edge rows, so the image is summed in
    bands between those rows (one pass) and only those rows are accumulated along x."""
    h, w = mask.shape
    ys = np.unique(np.concatenate([y0, y0 + size]))
    xs = np.unique(np.concatenate([x0, x0 + size]))
    dtype = np.int32 if h * w < 2 ** 31 else np.int64
    starts = np.unique(np.concatenate([[0], ys[ys < h]])).astype(np.intp)
    if h == 0 or w == 0 or len(y0) == 0:
        return np.zeros(len(y0), dtype=np.int64)
    bands = np.add.reduceat(np.asarray(mask, dtype=np.uint8), starts, axis=0, dtype=dtype)
    ends = np.append(starts[1:], h)                      # band k covers rows starts[k]:ends[k]
    above = np.cumsum(bands, axis=0)                      # above[k] = mask[:ends[k]].sum(axis=0)
    down = np.zeros((len(ys), w), dtype=dtype)            # down[i] = mask[:ys[i]].sum(axis=0)
    inside = ys > 0
    down[inside] = above[np.searchsorted(ends, ys[inside])]
    table = np.zeros((len(ys), w + 1), dtype=np.int64)
    np.cumsum(down, axis=1, out=table[:, 1:])            # table[i, x] = mask[:ys[i], :x].sum()
    table = table[:, xs]
    r0, r1 = np.searchsorted(ys, y0), np.searchsorted(ys, y0 + size)
    c0, c1 = np.searchsorted(xs, x0), np.searchsorted(xs, x0 + size)
    return table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]


def grid(shape: tuple[int, int], size: int, stride: int | None = None):
    """``(rows, cols, y0, x0)`` flat arrays of the grid's tiles (row-major)."""
    stride = size if stride is None else int(stride)
    if size <= 0 or stride <= 0:
        raise ValueError(f"size and stride must be positive, got {size}, {stride}")
    h, w = shape
    ys = np.arange(0, h - size + 1, stride)
    xs = np.arange(0, w - size + 1, stride)
    r, c = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
    return r.ravel(), c.ravel(), ys[r.ravel()], xs[c.ravel()]


def tile_pair(left: np.ndarray, right: np.ndarray, left_mask: np.ndarray, right_mask: np.ndarray,
              size: int, stride: int | None = None, max_background: float = 0.5,
              max_border_xor: float = 0.2) -> TilingResult:
    """Tile a registered pair and apply the rules; images are only checked for shape here."""
    shapes = {left.shape, right.shape, left_mask.shape, right_mask.shape}
    if len(shapes) != 1:
        raise ValueError(f"images and masks must share one shape, got {sorted(shapes)}")
    stride = size if stride is None else int(stride)
    rows, cols, y0, x0 = grid(left.shape, size, stride)
    area = float(size * size)
    lm, rm = left_mask.astype(bool), right_mask.astype(bool)
    bg_left = 1.0 - window_sums(lm, y0, x0, size) / area
    bg_right = 1.0 - window_sums(rm, y0, x0, size) / area
    xor = window_sums(lm ^ rm, y0, x0, size) / area

    too_much_background = (bg_left > max_background) | (bg_right > max_background)
    border = ~too_much_background & (xor > max_border_xor)
    keep = ~too_much_background & ~border
    boxes = np.stack([y0, x0, y0 + size, x0 + size], axis=1)[keep].astype(np.int64)
    return TilingResult(
        size=int(size), stride=stride, rows=rows[keep], cols=cols[keep], boxes=boxes,
        background=np.stack([bg_left, bg_right], axis=1)[keep], xor=xor[keep],
        total=int(len(rows)),
        dropped={"background": int(too_much_background.sum()), "border": int(border.sum())},
    )


def cut(image: np.ndarray, box) -> np.ndarray:
    """The patch of ``image`` inside ``[y0, x0, y1, x1]`` (a contiguous copy, dtype kept)."""
    y0, x0, y1, x1 = (int(v) for v in box)
    if y0 < 0 or x0 < 0 or y1 > image.shape[0] or x1 > image.shape[1] or y1 <= y0 or x1 <= x0:
        raise ValueError(f"box {[y0, x0, y1, x1]} is outside an image of shape {image.shape}")
    return np.ascontiguousarray(image[y0:y1, x0:x1])


def cut_tiles(image: np.ndarray, result: TilingResult) -> np.ndarray:
    """All kept tiles of one side at once: ``(N, size, size)``, dtype kept."""
    windows = sliding_window_view(image, (result.size, result.size))
    return np.ascontiguousarray(windows[result.boxes[:, 0], result.boxes[:, 1]])
