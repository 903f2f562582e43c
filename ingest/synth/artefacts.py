"""What real archives put around the breast (``artefacts=True``): film edges and bright scanner
strips (scanned film), collimation edges (digital detectors), lead markers, rulers and
burned-in text, and left/right differences in size and compression beyond the usual ones.

Each image draws from its own stream (purpose 8), so the option changes nothing else: with it
off no random number is drawn here and the files stay byte-identical. ``draw`` decides, for one
image, which artefacts it gets; ``apply`` paints them into the stored detector values (before
the mirroring of right breasts is undone, i.e. in stored orientation) and returns their union
as a mask, the ground truth that a breast mask must not overlap.

Kinds (``record["artefacts"]["kinds"]``):

* ``film_edge``: a band along one to three borders (top, bottom, the side away from the chest
  wall) where the film ends: bright, slightly uneven, full length, 1 to 4% of the side. Film
  only. A top band touches an MLO breast at the axilla, as on real scans;
* ``edge_strip``: a thin, very bright scanner strip at the outermost rows or columns of one
  border (film only);
* ``collimation``: a band beyond a collimator blade along the top or bottom (digital only),
  mid-grey and uniform with a sharp edge;
* ``marker``: a bright lead-marker block with the side's letter cut out, in the background away
  from the breast;
* ``ruler``: a thin bright bar with tick marks in the background (film only);
* ``text``: a line of burned-in text (a date and an id) in the background.

Markers, rulers and text are placed where they stay at least ``GAP`` of the image height from
the breast (disconnected from it); when no such place exists they are left out.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import labels

ARTEFACT_PURPOSE = 8
GAP = 0.02                  # markers, rulers and text keep this fraction of the height off the breast
P_IMAGE = 0.75              # share of the images that get artefacts (the rest stay clean)
EXTRA_SCALE = 0.10          # larger left/right size difference: positioning scale +-10% more
EXTRA_COMPRESSION = 0.10    # and compression +-10% more (realistic pairs)


def extra_positioning(rng: np.random.Generator) -> tuple[float, float]:
    """``(scale factor, compression factor)`` applied on top of the image's own positioning."""
    return (float(rng.uniform(1 - EXTRA_SCALE, 1 + EXTRA_SCALE)),
            float(rng.uniform(1 - EXTRA_COMPRESSION, 1 + EXTRA_COMPRESSION)))


def draw(rng: np.random.Generator, medium: str) -> list[str]:
    """The artefact kinds of one image (``medium``: "film" or "digital")."""
    if rng.random() >= P_IMAGE:
        return []
    kinds = []
    if medium == "film":
        if rng.random() < 0.8:
            kinds.append("film_edge")
        if rng.random() < 0.6:
            kinds.append("edge_strip")
        if rng.random() < 0.4:
            kinds.append("ruler")
    elif rng.random() < 0.6:
        kinds.append("collimation")
    if rng.random() < 0.7:
        kinds.append("marker")
    if rng.random() < 0.5:
        kinds.append("text")
    return kinds


def _band(shape, side: str, width: int) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    if side == "top":
        out[:width] = True
    elif side == "bottom":
        out[-width:] = True
    elif side == "left":
        out[:, :width] = True
    else:
        out[:, -width:] = True
    return out


def _free_spot(free: np.ndarray, h: int, w: int, rng: np.random.Generator):
    """Top-left corner of an ``h x w`` box lying wholly inside ``free``, drawn at random."""
    rows, cols = free.shape
    if h >= rows or w >= cols:
        return None
    table = np.zeros((rows + 1, cols + 1), dtype=np.int64)
    np.cumsum(np.cumsum(free, axis=0), axis=1, out=table[1:, 1:])
    sums = table[h:, w:] - table[:-h, w:] - table[h:, :-w] + table[:-h, :-w]
    ys, xs = np.nonzero(sums == h * w)
    if ys.size == 0:
        return None
    k = int(rng.integers(ys.size))
    return int(ys[k]), int(xs[k])


def apply(rng: np.random.Generator, kinds: list[str], pixels: np.ndarray, mask: np.ndarray,
          top: int, medium: str, *, chest_wall_left: bool, laterality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Paint ``kinds`` into ``pixels`` (detector values, breast bright, 0 = padding).

    Returns ``(pixels, breast mask less what the artefacts cover, artefact mask, boxes)``:
    boxes ``[x0, y0, x1, y1]`` (max exclusive) per painted artefact, in stored orientation.
    """
    rows, cols = pixels.shape
    out = pixels.copy()
    mask = mask.copy()
    art = np.zeros(pixels.shape, dtype=bool)
    boxes = []
    far = "right" if chest_wall_left else "left"

    def paint(region, values):
        nonlocal out
        out = np.where(region, np.clip(values, 1, top).astype(np.uint16), out)
        art[region] = True
        mask[region] = False
        ys, xs = np.nonzero(region)
        boxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])

    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    if medium == "film":
        # Film base and fog: the background of a scan is dim and noisy, never one value.
        fog = top * (rng.uniform(0.03, 0.08) + 0.01 * noise)
        out = np.where(mask, out, np.clip(fog, 1, top).astype(np.uint16))
    if "film_edge" in kinds:
        sides = [s for s in ("top", "bottom", far) if rng.random() < 0.6] or ["top"]
        for side in sides:
            length = rows if side in ("left", "right") else cols
            across = cols if side in ("left", "right") else rows
            width = max(2, int(round(across * rng.uniform(0.01, 0.04))))
            level = rng.uniform(0.75, 0.95)
            ramp = np.linspace(-0.04, 0.04, length, dtype=np.float32)   # uneven along the edge
            ramp = ramp[None, :] if side in ("top", "bottom") else ramp[:, None]
            paint(_band((rows, cols), side, width), top * (level + ramp + 0.01 * noise))
    if "edge_strip" in kinds:
        side = ("top", "bottom", far)[int(rng.integers(3))]
        across = cols if side in ("left", "right") else rows
        paint(_band((rows, cols), side, max(1, int(round(across * 0.006)))),
              np.full(pixels.shape, top * 0.99, dtype=np.float32))
    if "collimation" in kinds:
        side = "top" if rng.random() < 0.5 else "bottom"
        width = max(2, int(round(rows * rng.uniform(0.02, 0.05))))
        paint(_band((rows, cols), side, width), top * (rng.uniform(0.45, 0.7) + 0.003 * noise))

    # Small objects in the background, off the breast and off the bands above.
    gap = max(2, int(round(GAP * rows)))
    taken = (mask | art).view(np.uint8)
    free = ndimage.maximum_filter(taken, size=2 * gap + 1, mode="constant", cval=0) == 0
    free[:gap], free[-gap:], free[:, :gap], free[:, -gap:] = False, False, False, False
    if "marker" in kinds:
        side_h = max(8, int(round(rows * rng.uniform(0.03, 0.05))))
        glyph = labels.text_mask(laterality, max(int(side_h * 0.7), 6))
        block = np.ones((side_h, max(side_h, glyph.shape[1] + 4)), dtype=bool)
        gh, gw = min(glyph.shape[0], side_h - 2), min(glyph.shape[1], block.shape[1] - 2)
        oy, ox = (side_h - gh) // 2, (block.shape[1] - gw) // 2
        block[oy:oy + gh, ox:ox + gw] &= ~glyph[:gh, :gw]
        _place(rng, free, block, top * 0.97, paint, pixels.shape, gap)
    if "ruler" in kinds:
        length = int(round(rows * rng.uniform(0.15, 0.3)))
        thick = max(2, int(round(rows * 0.004)))
        bar = np.zeros((length, thick * 3), dtype=bool)
        bar[:, :thick] = True
        bar[::max(4, length // 20), :] = True                      # tick marks
        _place(rng, free, bar, top * 0.92, paint, pixels.shape, gap)
    if "text" in kinds:
        glyph = labels.text_mask(f"{int(rng.integers(1990, 2010))}-{int(rng.integers(1, 13)):02d} "
                                 f"ID{int(rng.integers(1000, 9999))}", max(int(rows * 0.018), 6))
        _place(rng, free, glyph, top * 0.9, paint, pixels.shape, gap)
    return out, mask, art, boxes


def _place(rng, free, stamp: np.ndarray, value: float, paint, shape, gap: int) -> None:
    spot = _free_spot(free, stamp.shape[0], stamp.shape[1], rng)
    if spot is None:
        return
    y, x = spot
    region = np.zeros(shape, dtype=bool)
    region[y:y + stamp.shape[0], x:x + stamp.shape[1]] = stamp
    paint(region, np.full(shape, value, dtype=np.float32))
    free[max(0, y - gap):y + stamp.shape[0] + gap, max(0, x - gap):x + stamp.shape[1] + gap] = False
