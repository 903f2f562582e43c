"""Bilateral registration of two normalised images (same exam and view) with SimpleITK.

Both images arrive with the chest wall on the left (``ingest.normalize``), so the two breasts are
already directly comparable: no flipping happens here (and never ``sitk.Flip``, which keeps the
physical space). The moving image is resampled onto the fixed image's grid.

Method: a similarity transform (rotation, one isotropic scale, shift: what breast positioning
does; rigid and affine are options), initialised by the centres of mass of the two masks,
normalised correlation of BAND-PASSED images (``band_pass``: normalised-convolution Gaussians
inside each mask, sigmas 12 and 60 full-resolution pixels), every pixel of the finest level used
(no random sampling), regular-step gradient descent with shift-equivalent scales, a two-level
pyramid (``shrink`` 16/8). The finest level is made once by a numpy block mean (``reduce``), the
coarser one by SimpleITK (smoothing sigma = relative shrink / 2 pixels); the moved image is
resampled at full resolution and, like a normalised image, is 0 exactly outside its (moved)
mask; what comes from outside the moving image's field of view is outside the moved mask
(background), so the tiling rules drop the tiles there rather than cut empty wedges. Last,
the registered alignment is compared with the pair as it came (``alignment_score``: mask Dice
and the correlation of the tissue over the breasts) and the better one is kept (``Registration.alignment``): a
registration never makes a pair worse than not registering it. The metric samples only pixels at least ``metric_margin`` (8% of the height) inside BOTH
breasts. Why: the two breasts of an exam share their tissue's low frequencies only; their
outlines (compression, shape), the envelopes that follow the outlines, vessels and fine texture
are their own, so the band-pass keeps the shared band and the margin drops the outline-driven
rim (see docs/ingest-pixels.md, "Accuracy"). The band-pass sigmas are in each image's own
pixels, so once a first estimate exists one more pass (``band_refine``) filters the moving image
with sigmas times the estimated scale (the same physical band as the fixed image), both images
only over the region that both show (each mask cut by the other one mapped through the
estimate), and refines at the finest level: without it, identical content under a scale of 0.93
to 1.1 came out 2 to 5 px off at the corners. Defaults chosen with ``python -m
ingest.register_bench``: about 0.2 CPU s per 1152x896 pair on one thread; median corner error about
0.1 px on phantom pairs, 0.3 to 0.5 px on generated exams whose sides differ only by their known
positioning (``ingest.synth`` positioning-only, through DICOM and normalisation), about 4.5 to
5.5 px on realistic generated left/right pairs (the metric's own optimum: starting at the truth
ends there too; the two breasts genuinely differ beyond a similarity transform).

Determinism: with ``threads=1`` the result is bit-identical from run to run; with more threads
the floating-point sums are split differently and the parameters differ in the last digits. The
pipeline therefore registers each pair on one thread and parallelises across pairs.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from ingest.geometry import as_boxes
from ingest.params import QualityParams, RegisterParams


@dataclass
class Registration:
    moved: np.ndarray             # uint16, moving image on the fixed grid
    moved_mask: np.ndarray        # bool
    transform: dict               # {"type", "parameters", "fixed_parameters"}: fixed → moving points
    dice_before: float            # Dice of the two breast masks as they came (not registered)
    dice_after: float             # Dice of the alignment used (``alignment``)
    ncc_after: float              # correlation inside the union of the masks, alignment used
    metric: float                 # final metric value (negative; lower is better)
    seconds: float
    iterations: list[int] = field(default_factory=list)   # optimizer iterations per level
    ncc_before: float = float("nan")        # correlation as they came
    dice_registered: float = float("nan")   # the registered alignment's figures, kept or not
    ncc_registered: float = float("nan")
    tissue_before: float = float("nan")     # ``tissue_correlation`` as they came / registered
    tissue_registered: float = float("nan")
    tissue_after: float = float("nan")      # ``tissue_correlation`` of the alignment kept
    alignment: str = "registered"           # "registered" or "initial" (the pair as it came)

    def quality(self) -> dict:
        return {"dice_before": self.dice_before, "dice_after": self.dice_after,
                "ncc_before": self.ncc_before, "ncc_after": self.ncc_after,
                "dice_registered": self.dice_registered, "ncc_registered": self.ncc_registered,
                "tissue_before": self.tissue_before, "tissue_registered": self.tissue_registered,
                "tissue_after": self.tissue_after,
                "alignment": self.alignment, "metric": self.metric, "seconds": self.seconds}


def alignment_score(dice_value: float, tissue_value: float) -> float:
    """How well two sides line up: twice the breast-mask Dice (the outlines; its range on real
    pairs, about 0.6 to 1, is half the correlation's) plus the tissue correlation
    (``tissue_correlation``). Higher is better. Why these two: on generated exams whose true
    map is known, registering always won by it (12 of 12 pairs, 20-90 px from the truth as
    they came, 1-3 px registered) although the Dice alone fell on 3 of them and the raw
    correlation over the masks on 5; on two unrelated breasts, where the registration drags
    the outline away (Dice 0.92 -> 0.61) to fit noise (tissue correlation 0.10 -> 0.53), the
    pair as it came wins."""
    return 2.0 * float(dice_value) + float(tissue_value)


def tissue_correlation(fixed: np.ndarray, moved: np.ndarray, fixed_mask: np.ndarray,
                       moved_mask: np.ndarray, *, finest: int = RegisterParams.shrink[-1],
                       band=RegisterParams.band,
                       margin: float = RegisterParams.metric_margin) -> float:
    """Correlation of the tissue the two sides share: both images at the registration's finest
    level, band-passed (``band``) over the breast both show, compared deep inside it (``margin``
    of the height in from its outline). The outlines, the envelope that follows them and the
    background do not enter it, unlike a correlation of the raw images over the masks."""
    f, m = block_mean(fixed, finest), block_mean(moved, finest)
    f_small, m_small = block_mean(fixed_mask, finest) > 0.5, block_mean(moved_mask, finest) > 0.5
    return _tissue_reduced(f, m, f_small, m_small, fixed.shape[0], finest, band, margin)


def _tissue_reduced(f, m, f_small, m_small, height: int, finest: int, band, margin: float) -> float:
    """``tissue_correlation`` of images and masks already reduced by ``finest`` (``reduce``):
    the registration reuses its own reductions rather than making them again."""
    from scipy import ndimage

    both = f_small & m_small
    if band is not None:
        low, high = (float(v) / finest for v in band)
        f, m = band_pass(f, both, low, high), band_pass(m, both, low, high)
    inner = both
    if margin > 0:
        eroded = ndimage.binary_erosion(both, iterations=max(1, round(margin * height / finest)))
        if eroded.sum() >= 64:
            inner = eroded
    return ncc(f, m, inner)


# ---------------------------------------------------------------- small helpers


def to_sitk(array: np.ndarray) -> sitk.Image:
    """A numpy image as float32 sitk image with unit spacing, origin 0, identity direction."""
    return sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))


def reduce(array: np.ndarray, factor: int) -> sitk.Image:
    """Block mean by an integer factor as a sitk image in FULL-resolution physical coordinates.

    Block ``i`` covers full-resolution pixels ``factor*i .. factor*i + factor - 1``; its centre,
    ``factor*i + (factor - 1)/2``, becomes its physical position (spacing ``factor``). Doing the
    finest pyramid level's reduction here, once, is much cheaper than letting the registration
    smooth the full-resolution images for every level.
    """
    img = sitk.GetImageFromArray(block_mean(array, factor))
    img.SetSpacing((float(factor), float(factor)))
    img.SetOrigin(((factor - 1) / 2.0, (factor - 1) / 2.0))
    return img


def block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """``reduce``'s pixels as a float32 numpy array (the edge padded by repeating it)."""
    a = np.asarray(array, dtype=np.float32)
    if factor > 1:
        h, w = a.shape
        ph, pw = -h % factor, -w % factor
        if ph or pw:
            a = np.pad(a, ((0, ph), (0, pw)), mode="edge")
        a = a.reshape(a.shape[0] // factor, factor, a.shape[1] // factor, factor).mean(axis=(1, 3))
    return np.ascontiguousarray(a, dtype=np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def ncc(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    """Pearson correlation of two images over the pixels in ``where``."""
    x = a[where].astype(np.float64)
    y = b[where].astype(np.float64)
    if x.size < 2:
        return 0.0
    x -= x.mean()
    y -= y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else 0.0


def transform_to_dict(tx: sitk.Transform) -> dict:
    return {"type": tx.GetName(), "parameters": [float(v) for v in tx.GetParameters()],
            "fixed_parameters": [float(v) for v in tx.GetFixedParameters()]}


def transform_from_dict(data: dict) -> sitk.Transform:
    kinds = {"Euler2DTransform": sitk.Euler2DTransform, "Similarity2DTransform": sitk.Similarity2DTransform,
             "AffineTransform": lambda: sitk.AffineTransform(2)}
    if data["type"] not in kinds:
        raise ValueError(f"unknown transform type {data['type']!r}")
    tx = kinds[data["type"]]()
    tx.SetFixedParameters(data["fixed_parameters"])
    tx.SetParameters(data["parameters"])
    return tx


def map_points(tx: sitk.Transform, points_xy: np.ndarray) -> np.ndarray:
    """Points ``(N, 2)`` as (x, y) through a transform."""
    return np.array([tx.TransformPoint((float(x), float(y))) for x, y in np.asarray(points_xy)])


def map_boxes_to_fixed(transform: dict, boxes_yxyx) -> np.ndarray:
    """Boxes of the MOVING image → boxes on the fixed grid (bounding box of the mapped corners).

    The registration transform maps fixed points to moving points, so its inverse is used.
    Pixel-edge box coordinates are turned into pixel-centre points (``- 0.5``) and back.
    """
    boxes = as_boxes(boxes_yxyx)
    inverse = transform_from_dict(transform).GetInverse()
    out = np.zeros_like(boxes)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]) - 0.5
        mapped = map_points(inverse, corners) + 0.5
        out[i] = [mapped[:, 1].min(), mapped[:, 0].min(), mapped[:, 1].max(), mapped[:, 0].max()]
    return out


def corner_error(transform: dict, truth: dict, shape: tuple[int, int]) -> float:
    """Median distance (pixels) between the four image corners mapped by two transforms."""
    h, w = shape
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=float)
    a = map_points(transform_from_dict(transform), corners)
    b = map_points(transform_from_dict(truth), corners)
    return float(np.median(np.linalg.norm(a - b, axis=1)))


def choose_fixed(left_has_rois, right_has_rois, left_roi_area: float = 0.0,
                 right_roi_area: float = 0.0) -> str:
    """Which side stays fixed: the side with ROIs (the other moves), as in the paper.

    Both sides with ROIs: the larger total ROI area stays fixed; a tie, or no ROI at all → left.
    """
    left, right = bool(left_has_rois), bool(right_has_rois)
    if left and not right:
        return "left"
    if right and not left:
        return "right"
    if left and right and right_roi_area > left_roi_area:
        return "right"
    return "left"


def passes_quality(reg: Registration, thresholds: dict | None = None) -> tuple[bool, str]:
    """``(ok, reason)``: a pair below any threshold is reported, not silently used."""
    thresholds = {**asdict(QualityParams()), **(thresholds or {})}
    for name, minimum in thresholds.items():
        value = getattr(reg, name)
        if not np.isfinite(value) or value < minimum:
            return False, f"{name} {value:.3f} < {minimum}"
    return True, "ok"


# ---------------------------------------------------------------- registration


def band_pass(image: np.ndarray, mask: np.ndarray, low: float, high: float) -> np.ndarray:
    """Band-pass ``image`` inside ``mask`` (sigmas in pixels of ``image``), unit std, 0 outside.

    Both filters are normalised convolutions (Gaussian of image x mask over Gaussian of mask), so
    the dark background does not leak into the breast. ``low`` removes the fine detail that
    differs between the two breasts (and the noise); ``high`` removes the slow envelope that
    follows each breast's own outline (thickness falloff, subcutaneous fat) rather than its
    tissue. ``high <= 0`` keeps the low frequencies.
    """
    from scipy import ndimage

    m = np.asarray(mask, dtype=np.float32)
    f = np.asarray(image, dtype=np.float32) * m

    def smooth(sigma: float) -> np.ndarray:
        if sigma <= 0:
            return f
        num = ndimage.gaussian_filter(f, sigma, mode="constant")
        den = ndimage.gaussian_filter(m, sigma, mode="constant")
        return num / np.maximum(den, 1e-3)

    out = smooth(low)
    if high > 0:
        out = out - smooth(high)
    out *= m
    inside = out[m > 0]
    spread = float(inside.std()) if inside.size else 0.0
    return out / spread if spread > 0 else out


TRANSFORMS = {"rigid": sitk.Euler2DTransform, "similarity": sitk.Similarity2DTransform,
              "affine": lambda: sitk.AffineTransform(2)}


def register_pair(fixed: np.ndarray, moving: np.ndarray, fixed_mask: np.ndarray,
                  moving_mask: np.ndarray, *, transform: str = RegisterParams.transform,
                  shrink=RegisterParams.shrink, sampling: float = RegisterParams.sampling,
                  iterations: int = RegisterParams.iterations, bins: int = RegisterParams.bins,
                  learning_rate: float = RegisterParams.learning_rate,
                  min_step: float = RegisterParams.min_step, seed: int = RegisterParams.seed,
                  metric_margin: float = RegisterParams.metric_margin, band=RegisterParams.band,
                  metric: str = RegisterParams.metric,
                  band_refine: int = RegisterParams.band_refine,
                  coarse_min_step: float = RegisterParams.coarse_min_step,
                  fixed_crop: int = RegisterParams.fixed_crop,
                  initial: dict | None = RegisterParams.initial,
                  threads: int | None = 1) -> Registration:
    """Register ``moving`` onto ``fixed``; see the module docstring for the method.

    The keyword arguments but ``threads`` are the fields of ``ingest.params.RegisterParams``
    (``register_pair(..., **asdict(params))``), whose defaults they take.

    ``transform``: "similarity" (rotation, one scale, shift: what positioning does), "rigid" or
    "affine";
    ``shrink``: pyramid shrink factors (the last level's factor sets the finest resolution used);
    ``sampling``: fraction of pixels drawn at random (fixed ``seed``) per metric evaluation
    (1: every pixel, no randomness);
    ``metric_margin``: the metric samples only pixels at least this fraction of the image height
    inside BOTH breasts (0: the whole image);
    ``band``: (low, high) Gaussian sigmas in full-resolution pixels of the band-pass applied to
    both images before registering (``None``: the raw intensities);
    ``metric``: "correlation" or "mattes" (Mattes mutual information, ``bins`` bins);
    ``band_refine``: passes that band-pass both images again from the current estimate (the
    moving one with sigmas x its scale, the same physical band as the fixed one's; both over
    the region seen in both images) and refine at the finest level (0: none);
    ``coarse_min_step``: the optimizer's smallest step (shift-equivalent pixels) in the first
    pass when a band refinement follows it (the refinement converges to ``min_step``);
    ``fixed_crop``: the fixed image is cut to its metric mask plus this many pixels of the
    pass's coarsest level around it before registering (0: not cut; only with a margin);
    ``initial``: a transform dict to start from (default: the centres of mass of the masks);
    ``threads``: SimpleITK threads for this call (None leaves the global default).
    """
    start = time.perf_counter()
    if fixed.shape != moving.shape:
        raise ValueError(f"fixed {fixed.shape} and moving {moving.shape} differ in shape")
    fixed_mask = np.asarray(fixed_mask, dtype=bool)
    moving_mask = np.asarray(moving_mask, dtype=bool)
    if not fixed_mask.any() or not moving_mask.any():
        raise ValueError("empty breast mask")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {sorted(TRANSFORMS)}, got {transform!r}")
    if metric not in ("correlation", "mattes"):
        raise ValueError(f"metric must be 'correlation' or 'mattes', got {metric!r}")
    if threads is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    shrink = [int(v) for v in shrink]
    finest = shrink[-1]
    if finest < 1 or any(a % finest for a in shrink):
        raise ValueError(f"shrink factors {shrink} must be multiples of the last one")
    f_img, m_img = reduce(fixed, finest), reduce(moving, finest)
    f_mask, m_mask = reduce(fixed_mask, finest), reduce(moving_mask, finest)
    f_small = sitk.GetArrayViewFromImage(f_mask) > 0.5
    m_small = sitk.GetArrayViewFromImage(m_mask) > 0.5
    f_base, m_base = f_img, m_img
    if band is not None:
        low, high = (float(v) / finest for v in band)
        f_img = _like(band_pass(sitk.GetArrayViewFromImage(f_base), f_small, low, high), f_base)
        m_img = _like(band_pass(sitk.GetArrayViewFromImage(m_base), m_small, low, high), m_base)
    levels = [a // finest for a in shrink]

    if initial is None:
        start_tx = sitk.CenteredTransformInitializer(
            f_mask, m_mask, TRANSFORMS[transform](), sitk.CenteredTransformInitializerFilter.MOMENTS)
    else:
        start_tx = transform_from_dict(initial)

    metric_masks = None
    if metric_margin > 0:
        # Sample the metric deep inside both breasts: near the skin line the two sides differ by
        # their outline, compression and the envelope that follows it, not by their tissue, and
        # would pull the scale towards matching outlines (see docs/ingest-pixels.md). Too small
        # a breast: the whole image.
        from scipy import ndimage

        steps = max(1, round(metric_margin * fixed.shape[0] / finest))
        metric_masks = []
        for small, ref in ((f_small, f_mask), (m_small, m_mask)):
            inner = ndimage.binary_erosion(small, iterations=steps)
            ok = inner.sum() >= 0.1 * small.sum() and inner.sum() >= 64
            metric_masks.append(_like(inner.astype(np.uint8), ref) if ok else None)

    settings = dict(metric=metric, bins=bins, sampling=sampling, seed=seed, iterations=iterations,
                    learning_rate=learning_rate, min_step=min_step, threads=threads,
                    metric_masks=metric_masks, fixed_crop=fixed_crop)
    per_level: list[int] = []
    refine = band_refine if band is not None else 0
    # A pass that a band refinement follows need not converge to the last 1e-4 px: the
    # refinement starts from its estimate at the finest level anyway.
    first = {**settings, "min_step": coarse_min_step} if refine else settings
    final, metric_value = _execute(f_img, m_img, levels, start_tx, per_level, **first)
    for _ in range(refine):
        # The band-pass sigmas are in each image's own pixels: with a scale s between the two
        # breasts the moving image was filtered at another physical scale than the fixed one,
        # which biases the scale estimate (2 to 5 px at the corners for s = 0.93 to 1.1 on
        # identical content). Filter it again with sigmas x s. Both are also filtered over the
        # region seen in BOTH images only (each mask cut by the other one mapped through the
        # estimate): where the image borders or the outlines cut the two breasts differently,
        # the normalised convolutions would otherwise average over different tissue. Then
        # refine at the finest level from the estimate.
        est = _flat(final)
        scale = _scale_of(est)
        seen_f = f_small & _mapped_mask(m_mask, f_mask, est)
        seen_m = m_small & _mapped_mask(f_mask, m_mask, est.GetInverse())
        if seen_f.sum() < 0.5 * f_small.sum() or seen_m.sum() < 0.5 * m_small.sum():
            seen_f, seen_m = f_small, m_small          # a poor estimate: keep the whole masks
        f_img = _like(band_pass(sitk.GetArrayViewFromImage(f_base), seen_f, low, high), f_base)
        m_img = _like(band_pass(sitk.GetArrayViewFromImage(m_base), seen_m, low * scale,
                                high * scale), m_base)
        final, metric_value = _execute(f_img, m_img, [1], est, per_level, **settings)

    full = to_sitk(fixed)
    moved = sitk.Resample(to_sitk(moving), full, final, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    moved_mask = sitk.Resample(to_sitk(moving_mask), full, final, sitk.sitkNearestNeighbor, 0.0,
                               sitk.sitkFloat32)
    moved_arr = np.clip(np.rint(sitk.GetArrayViewFromImage(moved)), 0, 65535).astype(np.uint16)
    moved_mask_arr = sitk.GetArrayViewFromImage(moved_mask) > 0.5
    # Same convention as a normalised image: 0 exactly where the mask is off, >= 1 on it.
    moved_arr[~moved_mask_arr] = 0
    moved_arr[moved_mask_arr & (moved_arr == 0)] = 1
    flat = _flat(final)
    # Never worse than not registering: when the two breasts differ beyond what a similarity
    # transform explains (real film pairs: compression, positioning, shape), the optimum of
    # the tissue metric can move the outlines apart. Keep the pair as it came when it lines up
    # better by the alignment score.
    # The tissue correlations reuse the reductions made above (fixed side, and the moving
    # side as it came); only the moved image and mask are reduced again.
    height = fixed.shape[0]
    f_red, m_red = sitk.GetArrayViewFromImage(f_base), sitk.GetArrayViewFromImage(m_base)
    before = (dice(fixed_mask, moving_mask), ncc(fixed, moving, fixed_mask | moving_mask),
              _tissue_reduced(f_red, m_red, f_small, m_small, height, finest, band, metric_margin))
    moved_small = block_mean(moved_mask_arr, finest) > 0.5
    after = (dice(fixed_mask, moved_mask_arr), ncc(fixed, moved_arr, fixed_mask | moved_mask_arr),
             _tissue_reduced(f_red, block_mean(moved_arr, finest), f_small,
                             moved_small, height, finest, band, metric_margin))
    initial_better = (alignment_score(before[0], before[2])
                      > alignment_score(after[0], after[2]))
    if initial_better:
        kept_tx = TRANSFORMS[transform]()         # identity: the moving image as it came
        moved_arr = np.asarray(moving, dtype=np.uint16).copy()
        moved_mask_arr = moving_mask.copy()
    return Registration(
        moved=moved_arr,
        moved_mask=moved_mask_arr,
        transform=transform_to_dict(kept_tx if initial_better else flat),
        dice_before=before[0],
        dice_after=before[0] if initial_better else after[0],
        ncc_after=before[1] if initial_better else after[1],
        metric=metric_value,
        seconds=time.perf_counter() - start,
        iterations=per_level,
        ncc_before=before[1],
        dice_registered=after[0],
        ncc_registered=after[1],
        tissue_before=before[2],
        tissue_registered=after[2],
        tissue_after=before[2] if initial_better else after[2],
        alignment="initial" if initial_better else "registered",
    )


def _flat(tx: sitk.Transform) -> sitk.Transform:
    """The single transform inside a one-element composite, as its own type."""
    if isinstance(tx, sitk.CompositeTransform) and tx.GetNumberOfTransforms() == 1:
        tx = tx.GetNthTransform(0)
    return tx.Downcast() if hasattr(tx, "Downcast") else tx


def _mapped_mask(mask: sitk.Image, onto: sitk.Image, tx: sitk.Transform) -> np.ndarray:
    """``mask`` (a reduced mask image) resampled onto ``onto``'s grid through ``tx`` (points of
    ``onto`` → points of ``mask``), as bool."""
    out = sitk.Resample(mask, onto, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out) > 0.5


def _scale_of(tx: sitk.Transform) -> float:
    """Isotropic scale of a 2-D transform's linear part (sqrt |det|)."""
    flat = _flat(tx)
    if not hasattr(flat, "GetMatrix"):
        return 1.0
    a = np.array(flat.GetMatrix(), dtype=float).reshape(2, 2)
    return float(np.sqrt(abs(np.linalg.det(a))))


def _crop_fixed(f_img: sitk.Image, inner: sitk.Image, pad: int):
    """``f_img`` and its metric mask ``inner`` cut to the mask's bounding box plus ``pad``
    pixels, the start a multiple of ``pad`` (so that the pyramid's coarser grids, ``pad`` a
    multiple of their shrink factors, fall on the same pixels as the uncut image's). Slicing a
    SimpleITK image keeps its physical coordinates."""
    a = sitk.GetArrayViewFromImage(inner)
    ys, xs = np.nonzero(a)
    h, w = a.shape
    y0, x0 = (max(0, (int(v.min()) - pad) // pad * pad) for v in (ys, xs))
    y1, x1 = min(h, int(ys.max()) + 1 + pad), min(w, int(xs.max()) + 1 + pad)
    return f_img[x0:x1, y0:y1], inner[x0:x1, y0:y1]


def _execute(f_img, m_img, levels, start_tx, per_level, *, metric, bins, sampling, seed,
             iterations, learning_rate, min_step, threads, metric_masks, fixed_crop):
    """One multi-level run of SimpleITK's registration; returns (final transform, metric).
    ``per_level`` gets the optimizer's iterations of each level appended."""
    if fixed_crop > 0 and metric_masks is not None and metric_masks[0] is not None:
        # The metric samples only the fixed pixels inside its mask, but SimpleITK still visits
        # (and tests) every pixel of the fixed image: cut it to the mask first (half the time
        # per iteration). The optimizer's shift-equivalent scales then come from the cut
        # domain, the region the metric actually compares.
        f_img, inner = _crop_fixed(f_img, metric_masks[0], int(fixed_crop) * max(levels))
        metric_masks = [inner, metric_masks[1]]
    reg = sitk.ImageRegistrationMethod()
    if threads is not None:
        reg.SetNumberOfThreads(int(threads))
    if metric == "correlation":
        reg.SetMetricAsCorrelation()
    else:
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=bins)
    if sampling < 1.0:
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        # SimpleITK reads seed 0 as "use the wall clock" (sitkWallClock == 0): shift by one.
        reg.SetMetricSamplingPercentage(float(sampling), int(seed) + 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=learning_rate, minStep=min_step, numberOfIterations=int(iterations),
        relaxationFactor=0.5, gradientMagnitudeTolerance=1e-10)
    # Shift-equivalent scales: one step moves any pixel by about the same distance, whether it
    # comes from the angle, the scale or the translation.
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(levels)
    reg.SetSmoothingSigmasPerLevel([a / 2.0 if a > 1 else 0.0 for a in levels])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    if metric_masks is not None:
        fixed_inner, moving_inner = metric_masks
        if fixed_inner is not None:
            reg.SetMetricFixedMask(fixed_inner)
        if moving_inner is not None:
            reg.SetMetricMovingMask(moving_inner)
    reg.SetInitialTransform(start_tx, inPlace=False)
    reg.AddCommand(sitk.sitkMultiResolutionIterationEvent, lambda: per_level.append(0))
    reg.AddCommand(sitk.sitkIterationEvent,
                   lambda: per_level.__setitem__(-1, per_level[-1] + 1) if per_level else None)
    final = reg.Execute(f_img, m_img)
    return final, float(reg.GetMetricValue())


def _like(array: np.ndarray, ref: sitk.Image) -> sitk.Image:
    """``array`` as a sitk image on ``ref``'s grid (spacing, origin, direction)."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.CopyInformation(ref)
    return img
