"""DICOM (or any grey image) → uint16 image with the breast bright, background 0, chest wall left.

The pipeline is a chain of small pure functions (see docs/ingest-pixels.md for the policies):

0. ``ingest.decode.stored_pixels``: the stored values; JPEG 2000 at a reduced resolution when
   the grid needs no more (``reduced_decode``), the geometry staying in the source's pixels;
1. ``modality_values``: stored values → modality values (pydicom ``apply_modality_lut``);
2. ``voi_values``: the VOI policy (``"auto"``: the window or VOI LUT of the file, SIGMOID included;
   ``"none"``: modality values scaled by ``2**BitsStored - 1``);
3. ``to_unit_range``: [0, 1] over the non-padding pixels, MONOCHROME1 inverted;
4. ``padding_mask``: PixelPaddingValue (and PixelPaddingRangeLimit) → background;
5. ``breast_mask``: largest connected component of a thresholded (Otsu and background peak),
   smoothed, reduced image, less the bands along the image's edges (``edge_bands``: film
   edges, scanner strips, collimation);
6. ``chest_wall_on_right``: orientation from the mask (never from the tags);
7. ``crop_box``: ``"none"`` keeps the whole image (default), ``"breast"`` the breast's box;
8. resize with an anti-aliasing filter into ``out_shape`` keeping the aspect ratio (top-left
   anchored, the rest is background), stretch the breast to [1, 65535], background 0.

Steps 1-3 are pointwise in the stored value: ``unit_values`` applies them through one lookup
table (what ``normalize_dataset`` uses). ROI boxes follow every step through
``NormalizedImage.map_boxes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from ingest.geometry import BoxMap
from ingest.params import NormalizeParams, PairParams

OUT_SHAPE = PairParams.out_shape      # the cache grid of a build (ingest.params)
MASK_SIDE = 512          # the mask is computed on a reduced copy with this longest side
UINT16_MAX = 65535


@dataclass
class NormalizedImage:
    pixels: np.ndarray            # uint16 (H, W): breast in [1, 65535], background 0
    mask: np.ndarray              # bool (H, W): the breast
    flipped: bool                 # mirrored so that the chest wall is on the left edge
    crop_box: tuple[int, int, int, int]   # [y0, x0, y1, x1] of the (mirrored) source kept
    scale: tuple[float, float]    # (sy, sx) source pixels → output pixels
    source_shape: tuple[int, int]
    box_map: BoxMap = field(repr=False)

    def map_boxes(self, boxes_xyxy) -> np.ndarray:
        """Original ``[x0, y0, x1, y1]`` boxes → normalised ``[y0, x0, y1, x1]`` (float)."""
        return self.box_map(boxes_xyxy)

    def meta(self) -> dict:
        """The geometry as JSON-serialisable values (for caches and reports)."""
        return {
            "flipped": bool(self.flipped),
            "crop_box": [int(v) for v in self.crop_box],
            "scale": [float(v) for v in self.scale],
            "source_shape": [int(v) for v in self.source_shape],
            "box_map": self.box_map.to_dict(),
        }


# ---------------------------------------------------------------- DICOM value transforms


def modality_values(ds) -> np.ndarray:
    """Stored pixel values → modality values (rescale slope/intercept or modality LUT)."""
    from pydicom.pixels import apply_modality_lut

    arr = ds.pixel_array
    if arr.ndim != 2:
        raise ValueError(f"expected one grey frame, got pixel array of shape {arr.shape}")
    return apply_modality_lut(arr, ds)


def voi_values(values: np.ndarray, ds, voi: str = NormalizeParams.voi) -> np.ndarray:
    """Apply the VOI policy; returns float64 (any range, not yet inverted)."""
    if voi == "none":
        return np.asarray(values, dtype=np.float64) / float(2 ** int(ds.BitsStored) - 1)
    if voi != "auto":
        raise ValueError(f"voi must be 'auto' or 'none', got {voi!r}")
    from pydicom.pixels import apply_voi_lut

    if ds.get("VOILUTSequence") and not np.issubdtype(values.dtype, np.integer):
        # A VOI LUT is indexed by integer values; modality output of integral slopes is integral.
        values = np.rint(values).astype(np.int64)
    return np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)


def padding_mask(stored: np.ndarray, ds) -> np.ndarray:
    """True where the stored value is PixelPaddingValue (or inside PixelPaddingRangeLimit)."""
    value = ds.get("PixelPaddingValue")
    if value is None:
        return np.zeros(stored.shape, dtype=bool)
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None:
        return stored == value
    lo, hi = sorted((int(value), int(limit)))
    return (stored >= lo) & (stored <= hi)


def to_unit_range(values: np.ndarray, padding: np.ndarray, monochrome1: bool) -> np.ndarray:
    """float32 in [0, 1] over the non-padding pixels, breast bright; padding → 0."""
    v = np.asarray(values, dtype=np.float32)
    valid = v[~padding]
    if valid.size == 0:
        raise ValueError("every pixel is padding")
    lo, hi = float(valid.min()), float(valid.max())
    out = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    if monochrome1:   # pydicom never inverts MONOCHROME1: low values are bright there
        out = 1.0 - out
    out[padding] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


def unit_values(ds, stored: np.ndarray, padding: np.ndarray,
                voi: str = NormalizeParams.voi) -> np.ndarray:
    """Steps 1-3 at once through a lookup table over the stored values (same result).

    Modality LUT, VOI and the unit-range map are pointwise functions of the stored value, so they
    are evaluated once per possible value (at most 65536) instead of once per pixel: about nine
    times faster on a 3328x2560 image than the float64 chain on the whole array.
    """
    if stored.ndim != 2:
        raise ValueError(f"expected one grey frame, got pixel array of shape {stored.shape}")
    from pydicom.pixels import apply_modality_lut

    lo, hi = int(stored.min()), int(stored.max())
    values = np.arange(lo, hi + 1, dtype=np.int64).astype(stored.dtype)
    lut = voi_values(apply_modality_lut(values, ds), ds, voi)
    if stored.dtype.kind == "u":   # stays unsigned (lo is the minimum): no int64 copy
        index = stored - stored.dtype.type(lo) if lo else stored
    else:
        index = stored.astype(np.int64) - lo
    counted = index[~padding] if padding.any() else index.ravel()
    present = np.bincount(counted, minlength=len(values)) > 0
    monochrome1 = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip() == "MONOCHROME1"
    unit_lut = to_unit_range(lut, ~present, monochrome1)   # min/max over the values present
    unit = unit_lut[index]
    unit[padding] = 0.0
    return unit


# ---------------------------------------------------------------- image-based steps


def resize_float(image: np.ndarray, size_hw: tuple[int, int], box=None) -> np.ndarray:
    """Anti-aliased resize of a float image (PIL's bilinear widens its support when shrinking).

    ``box`` = ``(y0, x0, y1, x1)`` of the source to resize (float, pixel edges); default whole.
    """
    h, w = size_hw
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    pil_box = None if box is None else (box[1], box[0], box[3], box[2])
    out = img.resize((int(w), int(h)), Image.Resampling.BILINEAR, box=pil_box)
    return np.asarray(out, dtype=np.float32)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample (maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mean0 = np.divide(m0, w0, out=np.zeros_like(m0), where=w0 > 0)
    mean1 = np.divide(m0[-1] - m0, w1, out=np.zeros_like(m0), where=w1 > 0)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(centers[int(np.argmax(between))])


def background_level(values: np.ndarray, otsu: float, bins: int = 256) -> tuple[float, float]:
    """``(level, spread)`` of the background: the histogram's peak below Otsu's threshold, and a
    one-sided robust standard deviation from the values under that peak (the breast lies above).

    The peak, not the median: below Otsu's threshold there may be fatty tissue as well as air
    (MLO views, where a bright pectoral muscle takes the upper class), and the air is the
    narrower, taller peak.
    """
    dark = values[values <= otsu]
    if dark.size == 0:
        return float(values.min()), 0.0
    hist, edges = np.histogram(dark, bins=bins)
    peak = int(np.argmax(hist))
    level = float((edges[peak] + edges[peak + 1]) / 2)
    below = dark[dark <= level]
    spread = 1.4826 * float(np.median(level - below)) if below.size else 0.0
    return level, spread


def breast_mask(unit: np.ndarray, padding: np.ndarray | None = None, *, sigma: float = 1.0,
                opening: int = 2, low: float = 0.05) -> np.ndarray:
    """The breast: largest connected component of a thresholded, slightly smoothed image.

    The threshold sits ``low`` of the way from the background level (``background_level``) up to
    Otsu's threshold, and at least 5 robust standard deviations of the background above it:
    Otsu alone cuts the dim fatty rim of the breast, or splits a bright pectoral muscle from
    the rest of the breast. Padding pixels (already 0) take
    part in the statistics: when the padding is the whole background they are the dark class.
    Burned-in text, rulers and markers are small and disconnected, so they lose to the breast;
    the binary opening cuts thin scanner borders that would otherwise join it, and wider bands
    along the edges (film edges, bright scanner strips, collimation: ``edge_bands``) are taken
    out, after which the threshold is found again without them (a bright band would otherwise
    take part in the statistics). Holes are filled.
    """
    smooth = ndimage.gaussian_filter(unit.astype(np.float32), sigma)
    valid = np.ones(unit.shape, bool) if padding is None else ~padding
    if not valid.any() or np.ptp(smooth) <= 1e-6:   # flat: nothing to separate
        return np.zeros(unit.shape, dtype=bool)
    fg = _foreground(smooth, valid, smooth.ravel(), low, opening)
    bands = edge_bands(fg)
    if bands.any():
        valid = valid & ~bands
        fg = _foreground(smooth, valid, smooth[~bands], low, opening)
    labels, count = ndimage.label(fg)
    if count == 0:
        return np.zeros(unit.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return fill_holes(labels == int(np.argmax(sizes)))


def _foreground(smooth, valid, sample, low: float, opening: int) -> np.ndarray:
    """Pixels above the breast threshold (see ``breast_mask``), statistics from ``sample``."""
    otsu = otsu_threshold(sample)
    background, spread = background_level(sample, otsu)
    threshold = max(background + low * (otsu - background), background + 5.0 * spread)
    fg = (smooth > threshold) & valid
    return square_opening(fg, opening) if opening else fg


def edge_bands(fg: np.ndarray, depth: float = 0.1, full: float = 0.9, drop: float = 0.75,
               margin: float = 0.03) -> np.ndarray:
    """Bands of foreground along the image's edges that are no breast: film edges, bright
    scanner strips, collimation. Per edge, from the edge inwards (after at most ``margin`` of
    the side of empty lines): lines whose foreground covers at least ``full`` of their length,
    ending within ``depth`` of the side, and followed by a line with less than ``drop`` times
    that coverage. A breast never covers a whole top or bottom row; at the chest wall it can
    cover nearly a whole column, but its coverage falls off gradually inwards, not at once, so
    the chest wall is never taken for a band. (A strip ON the chest-wall edge is therefore not
    removed.) Returns the bands' pixels (the edge-side lines included)."""
    out = np.zeros(fg.shape, dtype=bool)
    for axis in (0, 1):
        cover = fg.mean(axis=1 - axis)        # axis 0: per row; axis 1: per column
        n = cover.size
        limit, skip = max(2, int(depth * n)), int(margin * n)
        for reverse in (False, True):
            f = cover[::-1] if reverse else cover
            i = 0
            while i < skip and f[i] < 0.05:
                i += 1
            j = i
            while j < limit and f[j] >= full:
                j += 1
            if j == i or j >= limit or f[j] >= drop * f[j - 1]:
                continue
            lines = slice(n - j, n) if reverse else slice(0, j)
            if axis == 0:
                out[lines] = True
            else:
                out[:, lines] = True
    return out


def square_opening(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``ndimage.binary_opening`` with a 3x3 square repeated ``iterations`` times, the same
    result: one separable min then max filter of side ``2 * iterations + 1`` (outside = 0)."""
    side = 2 * int(iterations) + 1
    eroded = ndimage.minimum_filter(mask.view(np.uint8), size=side, mode="constant", cval=0)
    return ndimage.maximum_filter(eroded, size=side, mode="constant", cval=0).view(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes``, the same result: background components (4-connected)
    that do not touch the image's edge are holes. One labelling instead of a dilation iterated
    from the edge until it stops."""
    background, count = ndimage.label(~mask)
    edge = np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    hole = np.ones(count + 1, dtype=bool)
    hole[0] = False
    hole[edge] = False
    return mask | hole[background]


def chest_wall_on_right(mask: np.ndarray, band: int = 2) -> bool:
    """Whether the chest wall is on the right edge: the side the breast touches more.

    Ties (including touching neither edge) go to the side holding more of the breast's mass.
    """
    left = int(mask[:, :band].sum())
    right = int(mask[:, -band:].sum())
    if left != right:
        return right > left
    cols = np.nonzero(mask)[1]
    if cols.size == 0:
        return False
    return float(cols.mean()) > (mask.shape[1] - 1) / 2


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``[y0, x0, y1, x1]`` (end exclusive) of the True pixels."""
    rows = np.nonzero(mask.any(axis=1))[0]
    cols = np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        raise ValueError("empty mask")
    return (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)


def crop_box(mask_small: np.ndarray, source_shape: tuple[int, int], crop: str,
             margin: float = 0.02) -> tuple[int, int, int, int]:
    """The source box to keep: the whole image (``"none"``) or the breast's box plus a margin.

    ``mask_small`` is the (mirrored) reduced mask; its box is scaled to the source grid.
    """
    h, w = source_shape
    if crop == "none":
        return (0, 0, h, w)
    if crop != "breast":
        raise ValueError(f"crop must be 'none' or 'breast', got {crop!r}")
    y0, x0, y1, x1 = bounding_box(mask_small)
    fy, fx = h / mask_small.shape[0], w / mask_small.shape[1]
    my, mx = margin * h, margin * w
    return (max(0, int(np.floor(y0 * fy - my))), max(0, int(np.floor(x0 * fx - mx))),
            min(h, int(np.ceil(y1 * fy + my))), min(w, int(np.ceil(x1 * fx + mx))))


def mask_shape(source_hw: tuple[int, int]) -> tuple[int, int]:
    """Size of the reduced copy the breast mask is found on (longest side ``MASK_SIDE``)."""
    h, w = source_hw
    f = max(1.0, max(h, w) / MASK_SIDE)
    return (max(1, int(round(h / f))), max(1, int(round(w / f))))


def fit_shape(box_hw: tuple[int, int], out_shape: tuple[int, int]) -> tuple[int, int]:
    """Size of the box resized into ``out_shape`` with its aspect ratio kept."""
    bh, bw = box_hw
    oh, ow = out_shape
    s = min(oh / bh, ow / bw)
    return (max(1, min(oh, int(round(bh * s)))), max(1, min(ow, int(round(bw * s)))))


def stretch_to_uint16(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Breast values linearly onto [1, 65535] (min → 1, max → 65535), background 0."""
    out = np.zeros(values.shape, dtype=np.uint16)
    if not mask.any():
        return out
    inside = values[mask]
    lo, hi = float(inside.min()), float(inside.max())
    scale = (UINT16_MAX - 1) / (hi - lo) if hi > lo else 0.0
    out[mask] = np.rint(1 + (inside - lo) * scale).astype(np.uint16)
    return out


# ---------------------------------------------------------------- the whole chain


def normalize_array(unit: np.ndarray, padding: np.ndarray | None = None, *,
                    out_shape=OUT_SHAPE, crop: str = NormalizeParams.crop,
                    source_shape=None) -> NormalizedImage:
    """Normalise a float image in [0, 1] with the breast bright (any orientation).

    Used by ``normalize_dataset`` after the DICOM steps, and directly for non-DICOM sources.
    ``source_shape`` (default ``unit.shape``): the size of the image ``unit`` is a reduced
    decode of (``ingest.decode``); the geometry (crop box, scale, box map) is then in the
    source's pixels, as if the source had been decoded in full.
    """
    unit = np.asarray(unit, dtype=np.float32)
    if unit.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {unit.shape}")
    h, w = unit.shape if source_shape is None else (int(v) for v in source_shape)
    # Source pixels -> pixels of ``unit`` (1 unless decoded at a reduced resolution).
    ry, rx = unit.shape[0] / h, unit.shape[1] / w
    if padding is None:
        padding = np.zeros(unit.shape, dtype=bool)
    # The mask is found on a reduced copy: ~50x cheaper and smoother than at full size.
    small_hw = mask_shape((h, w))
    small = resize_float(unit, small_hw)
    small_pad = np.asarray(Image.fromarray(padding.view(np.uint8) * np.uint8(255)).resize(
        (small_hw[1], small_hw[0]), Image.Resampling.BILINEAR)) > 127
    mask_small = breast_mask(small, small_pad)
    if not mask_small.any():
        raise ValueError("no breast found (empty foreground)")

    flipped = chest_wall_on_right(mask_small)
    if flipped:   # numpy mirror; never sitk.Flip, which keeps physical space
        unit = unit[:, ::-1]
        mask_small = mask_small[:, ::-1]

    box = crop_box(mask_small, (h, w), crop)
    rh, rw = fit_shape((box[2] - box[0], box[3] - box[1]), out_shape)
    unit_box = box if (ry, rx) == (1.0, 1.0) else (
        box[0] * ry, box[1] * rx, box[2] * ry, box[3] * rx)
    values = resize_float(unit, (rh, rw), box=unit_box)
    fy, fx = small_hw[0] / h, small_hw[1] / w
    small_box = (box[0] * fy, box[1] * fx, box[2] * fy, box[3] * fx)
    mask = resize_float(mask_small.astype(np.float32), (rh, rw), box=small_box) > 0.5

    pixels = np.zeros(tuple(out_shape), dtype=np.uint16)
    full_mask = np.zeros(tuple(out_shape), dtype=bool)
    pixels[:rh, :rw] = stretch_to_uint16(values, mask)
    full_mask[:rh, :rw] = mask
    scale = (rh / (box[2] - box[0]), rw / (box[3] - box[1]))
    box_map = BoxMap(source_width=w, flipped=flipped, crop_origin=(box[0], box[1]),
                     scale=scale, extent=(rh, rw))
    return NormalizedImage(pixels=pixels, mask=full_mask, flipped=flipped, crop_box=box,
                           scale=scale, source_shape=(h, w), box_map=box_map)


def normalize_dataset(ds, *, out_shape=OUT_SHAPE, voi: str = NormalizeParams.voi,
                      crop: str = NormalizeParams.crop,
                      reduced_decode: bool = NormalizeParams.reduced_decode,
                      stored: np.ndarray | None = None) -> NormalizedImage:
    """A pydicom Dataset → ``NormalizedImage`` (see the module docstring for the steps).

    ``voi``, ``crop`` and ``reduced_decode`` are the fields of ``ingest.params.NormalizeParams``,
    whose defaults they take (so the cache key follows them). ``stored``: the pixels
    ``ingest.decode.stored_pixels`` gave with the same settings (default: decoded here); a
    reduced JPEG 2000 decode keeps the geometry in the source's ``Rows`` x ``Columns``."""
    if stored is None:
        from ingest.decode import stored_pixels

        stored = stored_pixels(ds, out_shape, crop=crop, reduced_decode=reduced_decode)
    padding = padding_mask(stored, ds)
    unit = unit_values(ds, stored, padding, voi)
    source = (int(ds.Rows), int(ds.Columns)) if "Rows" in ds else stored.shape
    return normalize_array(unit, padding, out_shape=out_shape, crop=crop,
                           source_shape=None if source == stored.shape else source)
