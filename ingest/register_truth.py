"""Registration against a known answer: pairs whose true transform is known, and measures of an
estimate against it. Used by the registration benchmark and by the tests.

* ``known_pair``: a phantom breast and a copy of it moved by a known rigid transform;
* ``exam_pairs``: the left and right images of generated exams (``ingest.synth``), normalised as
  the pipeline does, with the true left → right map (``truth_transform`` composes each side's
  normalisation with the generator's positioning); ``truth_check`` verifies that map;
* ``warp``, ``as_similarity``, ``breast_error``: resampling through a transform dict, the nearest
  similarity, and the median error over the breast;
* ``PREVIOUS``: the registration settings before the current defaults, the baseline that
  improvements are measured against.
"""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ingest.phantom import phantom, to_uint16
from ingest.register import to_sitk, transform_to_dict


def known_pair(shape=(1152, 896), seed: int = 0, max_angle: float = 5.0, max_shift: float = 20.0,
               noise: float = 0.01):
    """``(fixed, moving, fixed_mask, moving_mask, truth)`` with ``truth`` the fixed→moving map.

    ``moving`` is the phantom; ``fixed`` is the phantom resampled through ``truth``, so a perfect
    registration of moving onto fixed recovers ``truth`` itself.
    """
    rng = np.random.default_rng(seed)
    image, mask = phantom(shape, seed=seed)
    h, w = shape
    truth = sitk.Euler2DTransform()
    truth.SetCenter(((w - 1) / 2, (h - 1) / 2))
    truth.SetAngle(float(np.deg2rad(rng.uniform(-max_angle, max_angle))))
    truth.SetTranslation([float(v) for v in rng.uniform(-max_shift, max_shift, 2)])
    ref = to_sitk(image)
    fixed = sitk.GetArrayFromImage(sitk.Resample(ref, ref, truth, sitk.sitkLinear, 0.0))
    fixed_mask = sitk.GetArrayFromImage(
        sitk.Resample(to_sitk(mask), ref, truth, sitk.sitkNearestNeighbor, 0.0)) > 0.5
    fixed = fixed + noise * rng.standard_normal(shape).astype(np.float32)
    moving = image + noise * rng.standard_normal(shape).astype(np.float32)
    return (to_uint16(fixed, fixed_mask), to_uint16(moving, mask), fixed_mask, mask,
            transform_to_dict(truth))


# The previous default: rigid, Mattes MI on raw intensities, shrink 8/4, 10% sampling, the fixed
# breast eroded by 7%.
PREVIOUS = dict(transform="rigid", shrink=(8, 4), sampling=0.10, iterations=100, metric="mattes",
                band=None, metric_margin=0.07, min_step=1e-3)


def exam_pairs(exams: int, shape=(1152, 896), seed: int = 0, image_size=None,
               pair_variation: str = "realistic", lesion_fraction: float | None = None,
               artefacts: bool = False, layout: str = "vindr"):
    """Normalised (left, right) pairs of generated exams with the true left → right map.

    Yields ``(left NormalizedImage, right NormalizedImage, truth)``: ``truth`` is an affine
    transform dict (``transform_from_dict``) mapping (x, y) pixel centres of the normalised left
    image to the normalised right image, i.e. what a registration with the left side fixed
    should return. It composes, for each side: the normalisation (mirroring the stored right
    image back, resizing by ``scale`` with pixel centres at ``(i + 0.5) / s - 0.5``) and the
    generator's positioning (``ingest.synth.positioning.pair_matrix``, (row, col) of the
    un-mirrored left image → through the breast frame → (row, col) of the un-mirrored right
    image). ``image_size``: the generator's image size (default ``shape``, no resize).
    ``pair_variation``: the generator's (``"realistic"``: the sides share only the tissue's low
    frequencies; ``"positioning-only"``: the right breast is the left one mirrored, so the sides
    differ only by their positioning and noise and the truth is exact). ``lesion_fraction``:
    default the generator's 0.3 for realistic pairs (a lesion is one more genuine difference)
    and 0 for positioning-only ones (a one-sided lesion would break their identity).
    ``artefacts``: the generator's (film edges, strips, collimation, markers, text, larger
    left/right size and compression differences); ``layout``: the generator's layout
    ("cbis-ddsm" gives the images as its scanned films, without padding).
    """
    for left, right, truth, _ in exam_pairs_with_artefacts(
            exams, shape, seed, image_size, pair_variation, lesion_fraction, artefacts, layout):
        yield left, right, truth


def exam_pairs_with_artefacts(exams: int, shape=(1152, 896), seed: int = 0, image_size=None,
                              pair_variation: str = "realistic",
                              lesion_fraction: float | None = None, artefacts: bool = True,
                              layout: str = "vindr"):
    """``exam_pairs`` plus, per pair, ``{"L": mask, "R": mask}``: where the generator's
    artefacts lie on each normalised image's grid (``normalised_artefacts``)."""
    if lesion_fraction is None:
        lesion_fraction = 0.0 if pair_variation == "positioning-only" else 0.3
    from ingest.normalize import normalize_array
    from ingest.synth import render_exam
    from ingest.synth.layout_cbis import to_film
    from ingest.synth.positioning import pair_matrix

    for index in range(exams):
        plan, studies = render_exam(seed, index, image_size=image_size or shape, lesion_fraction=lesion_fraction,
                                    studies_per_patient=(1, 1), pair_variation=pair_variation,
                                    layout=layout, artefacts=artefacts)
        by_key = {(im.record["laterality"], im.record["view"]): im for im in studies[0]}
        for view in ("CC", "MLO"):
            norm, arts = {}, {}
            for side in ("L", "R"):
                im = by_key[(side, view)]
                rec = im.record
                if layout == "cbis-ddsm":         # the scanned film: no padding value
                    unit = to_film(im.pixels, rec).astype(np.float32) / 65535.0
                    padding = np.zeros(unit.shape, dtype=bool)
                else:
                    top = float(2 ** rec["bits_stored"] - 1)
                    unit = im.pixels.astype(np.float32) / top
                    if rec["photometric"] == "MONOCHROME1":
                        unit = 1.0 - unit
                    padding = im.pixels == rec["padding_value"]
                norm[side] = normalize_array(np.where(padding, 0, unit), padding, out_shape=shape)
                arts[side] = normalised_artefacts(im.artefacts, norm[side])
            if norm["L"].flipped or not norm["R"].flipped:
                raise AssertionError("normalisation should mirror the right breast only")
            m = pair_matrix(by_key[("L", view)].record, by_key[("R", view)].record)
            yield norm["L"], norm["R"], truth_transform(m, norm["L"].scale, norm["R"].scale), arts


def normalised_artefacts(artefacts, norm) -> np.ndarray:
    """A source-grid artefact mask (``RenderedImage.artefacts``, None: none) carried onto the
    normalised grid as ``normalize_array`` carries the image (mirror, crop, resize): every
    output pixel that any artefact pixel touches."""
    from ingest.normalize import resize_float

    out = np.zeros(norm.mask.shape, dtype=bool)
    if artefacts is None or not artefacts.any():
        return out
    src = artefacts[:, ::-1] if norm.flipped else artefacts
    rh, rw = norm.box_map.extent
    out[:rh, :rw] = resize_float(src.astype(np.float32), (rh, rw), box=norm.crop_box) > 0
    return out


def truth_transform(m: np.ndarray, left_scale, right_scale) -> dict:
    """Affine transform dict, normalised left (x, y) → normalised right (x, y), from the 3x3
    (row, col) matrix ``m`` between the un-mirrored source images and the two resize scales."""
    def to_source(scale):     # normalised (x, y, 1) → source (row, col, 1)
        sy, sx = scale
        return np.array([[0, 1 / sy, 0.5 / sy - 0.5], [1 / sx, 0, 0.5 / sx - 0.5], [0, 0, 1]])

    def from_source(scale):   # source (row, col, 1) → normalised (x, y, 1)
        sy, sx = scale
        return np.array([[0, sx, 0.5 * sx - 0.5], [sy, 0, 0.5 * sy - 0.5], [0, 0, 1]])

    a = from_source(right_scale) @ m @ to_source(left_scale)
    tx = sitk.AffineTransform(2)
    tx.SetMatrix([float(v) for v in a[:2, :2].ravel()])
    tx.SetTranslation([float(v) for v in a[:2, 2]])
    return transform_to_dict(tx)


def as_similarity(transform: dict) -> dict:
    """The nearest similarity transform dict (for starting a similarity registration there)."""
    from ingest.register import transform_from_dict

    a = np.array(transform_from_dict(transform).GetMatrix()).reshape(2, 2)
    tx = sitk.Similarity2DTransform()
    tx.SetScale(float(np.sqrt(abs(np.linalg.det(a)))))
    tx.SetAngle(float(np.arctan2(a[1, 0] - a[0, 1], a[0, 0] + a[1, 1])))
    tx.SetTranslation(transform_from_dict(transform).TransformPoint((0.0, 0.0)))
    return transform_to_dict(tx)


def warp(moving: np.ndarray, transform: dict, order: int = 1) -> np.ndarray:
    """``moving`` resampled on its own grid through ``transform`` (fixed → moving points)."""
    from ingest.register import transform_from_dict

    interp = sitk.sitkLinear if order else sitk.sitkNearestNeighbor
    ref = to_sitk(moving)
    return sitk.GetArrayFromImage(sitk.Resample(ref, ref, transform_from_dict(transform), interp, 0.0))


def truth_check(left, right, truth: dict, margin: float = 0.08) -> dict:
    """Figures of the left image against the right one warped by ``truth`` and by the identity:
    Dice of the masks, NCC of the raw images over both masks, and NCC of the band-passed images
    (``register.band_pass`` with the default band) over both masks eroded by ``margin`` of the
    height: the tissue the two sides share. A correct truth composition gives a far higher
    tissue NCC than no transform (the raw NCC and the Dice also follow the outlines, which
    differ between the sides)."""
    from scipy import ndimage

    from ingest.params import RegisterParams
    from ingest.register import band_pass, dice, ncc

    identity = transform_to_dict(sitk.AffineTransform(2))
    steps = max(1, round(margin * left.mask.shape[0]))
    inner = ndimage.binary_erosion(left.mask, iterations=steps)
    low, high = RegisterParams.band
    tissue = band_pass(left.pixels, left.mask, low, high)
    out = {}
    for name, tx in (("truth", truth), ("identity", identity)):
        moved = warp(right.pixels, tx)
        moved_mask = warp(right.mask.astype(np.float32), tx, order=0) > 0.5
        both = left.mask & moved_mask
        out[f"ncc_{name}"] = ncc(left.pixels, moved, both)
        out[f"dice_{name}"] = dice(left.mask, moved_mask)
        moved_inner = ndimage.binary_erosion(moved_mask, iterations=steps)
        out[f"tissue_ncc_{name}"] = ncc(tissue, band_pass(moved, moved_mask, low, high),
                                        inner & moved_inner)
    return out


def breast_error(transform: dict, truth, mask: np.ndarray, points: int = 2000, seed: int = 0) -> float:
    """Median distance (pixels) between the estimated and true maps over points of the breast.

    ``truth``: a transform dict, or a function of ``(N, 2)`` (x, y) points.
    """
    from ingest.register import map_points, transform_from_dict

    ys, xs = np.nonzero(mask)
    pick = np.random.default_rng(seed).choice(len(ys), min(points, len(ys)), replace=False)
    pts = np.stack([xs[pick], ys[pick]], axis=1).astype(float)
    est = map_points(transform_from_dict(transform), pts)
    true = map_points(transform_from_dict(truth), pts) if isinstance(truth, dict) else truth(pts)
    return float(np.median(np.linalg.norm(est - true, axis=1)))
