"""One patient's screening exams rendered in memory: the pure core of the generator.

``plan_patient`` draws everything that is fixed for a patient (density, beta, breast shapes,
device, lesion, studies) and ``render_image`` turns one (study, laterality, view) into stored
uint16 pixels, the breast mask and the ground-truth record.  Every random draw comes from a
SeedSequence keyed by (seed, patient index, purpose, ...), so any image can be rendered alone,
in any process, in any order, with the same result.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.ndimage import affine_transform

from . import anatomy, artefacts, labels, lesions, positioning, tissue, vessels

VIEWS = ("CC", "MLO")
IMAGE_ORDER = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
DENSITIES = ("A", "B", "C", "D")
DENSITY_P = (0.10, 0.40, 0.38, 0.12)

# (manufacturer, model, rows, cols, pixel spacing mm)
DEVICES = {
    "vindr": (("SIEMENS", "MAMMOMAT Inspiration", 3328, 2560, 0.085),
              ("Planmed Oy", "Planmed Nuance", 2294, 1914, 0.1)),
    "optimam": (("HOLOGIC, Inc.", "Selenia Dimensions", 3328, 2560, 0.085),
                ("GE MEDICAL SYSTEMS", "Senographe Essential", 2294, 1914, 0.1)),
    # Film digitisers of DDSM (pixel pitch 50 and 43.5 microns).
    "cbis-ddsm": (("LUMISYS", "Lumiscan 85", 4600, 3000, 0.05),
                  ("HOWTEK", "MultiRad 850", 5200, 3400, 0.0435)),
    "rsna": (("HOLOGIC, Inc.", "Selenia Dimensions", 3328, 2560, 0.085),
             ("GE MEDICAL SYSTEMS", "Senographe Pristina", 2294, 1914, 0.1)),
}
DEFAULT_SIZE = (3328, 2560)

# How the two breasts of a patient differ (``generate(pair_variation=...)``):
# "realistic": they share the low-frequency tissue pattern only; outline (shape jitter, own
#   compression), fine texture and vessels are each breast's own, so a normal pair is alike but
#   never identical;
# "positioning-only": the right breast is the exact mirror of the left one (same outline and
#   compression, same fine texture and vessels; a lesion, if any, stays on its side); only each
#   image's positioning (rotation, shift, scale) and detector noise differ, so the true left/right
#   registration is exactly ``positioning.pair_matrix``.
PAIR_VARIATIONS = ("realistic", "positioning-only")

# What the archive's images carry around the breast (``artefacts=True``, ``synth.artefacts``):
# scanned film for CBIS-DDSM, a digital detector for the other layouts.
ARTEFACT_MEDIUM = {"cbis-ddsm": "film"}


def rng_for(seed: int, index: int, *key: int) -> np.random.Generator:
    """Generator for one purpose of one patient: independent of process and order."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),) + key))


@dataclass
class StudyPlan:
    number: int                 # 0 = oldest
    date: str                   # YYYYMMDD
    photometric: str            # MONOCHROME1 or MONOCHROME2
    voi_function: str           # LINEAR or SIGMOID
    burned_label: bool
    has_lesion: bool
    birads: dict                # {"L": int, "R": int}


@dataclass
class PatientPlan:
    seed: int
    index: int
    age: int
    density: str
    beta: float
    device: tuple
    rows: int
    cols: int
    spacing_mm: float
    bits_stored: int
    split: str
    lesion: lesions.LesionPlan | None
    lesion_side: str | None
    shapes: dict = field(default_factory=dict)      # {view: {laterality: BreastShape}}
    studies: list = field(default_factory=list)
    pair_variation: str = "realistic"               # one of PAIR_VARIATIONS
    artefacts: str = "none"                         # "none", "film" or "digital"

    @property
    def outcome(self) -> str:
        return "normal" if self.lesion is None else self.lesion.outcome


def plan_patient(seed: int, index: int, layout: str = "vindr", image_size=None,
                 lesion_fraction: float = 0.3, studies_per_patient=(1, 2),
                 pair_variation: str = "realistic", artefacts: bool = False) -> PatientPlan:
    if pair_variation not in PAIR_VARIATIONS:
        raise ValueError(f"pair_variation must be one of {', '.join(PAIR_VARIATIONS)}, got {pair_variation!r}")
    rng = rng_for(seed, index, 0)
    device = DEVICES[layout][int(rng.random() < 0.3)]
    if image_size is None:
        rows, cols, spacing = device[2], device[3], device[4]
    else:
        rows, cols = int(image_size[0]), int(image_size[1])
        spacing = device[4] * device[2] / rows      # same field of view, coarser pixels
    density = str(rng.choice(DENSITIES, p=DENSITY_P))
    beta = float(rng.uniform(2.5, 3.5))
    has_lesion = bool(rng.random() < lesion_fraction)
    lesion = lesions.plan_lesion(rng) if has_lesion else None
    side = str(rng.choice(["L", "R"])) if has_lesion else None
    lo, hi = studies_per_patient
    n_studies = int(rng.integers(lo, hi + 1))
    plan = PatientPlan(seed, index, int(rng.integers(40, 76)), density, beta, device, rows, cols,
                       float(spacing), int(rng.choice([12, 14], p=[0.6, 0.4])),
                       "test" if rng.random() < 0.2 else "training", lesion, side,
                       pair_variation=pair_variation,
                       artefacts=ARTEFACT_MEDIUM.get(layout, "digital") if artefacts else "none")
    size = float(rng.random())
    for view in VIEWS:
        base = anatomy.sample_shape(rng, view, (rows, cols), size)
        variant = base.mirrored_variant(rng)   # drawn in every mode: later draws stay the same
        plan.shapes[view] = {"L": base, "R": base if pair_variation == "positioning-only" else variant}
    year = int(rng.integers(2012, 2020))
    for k in range(n_studies):
        last = k == n_studies - 1
        birads = {s: int(rng.choice([1, 2], p=[0.8, 0.2])) for s in ("L", "R")}
        if last and lesion is not None:
            birads[side] = lesion.birads
        month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
        plan.studies.append(StudyPlan(
            k, f"{year + 3 * k:04d}{month:02d}{day:02d}",
            "MONOCHROME1" if rng.random() < 0.2 else "MONOCHROME2",
            "SIGMOID" if rng.random() < 0.3 else "LINEAR",
            bool(rng.random() < 0.4), last and lesion is not None, birads))
    return plan


@dataclass
class RenderedImage:
    pixels: np.ndarray      # uint16, stored orientation and photometric
    mask: np.ndarray        # bool breast mask, stored orientation
    record: dict            # ground truth (no ids yet: the layout adds them)
    artefacts: np.ndarray | None = None   # bool, stored orientation: what artefacts cover


def _window(values: np.ndarray, bits: int) -> tuple[float, float]:
    lo, hi = np.percentile(values, [0.5, 99.8]) if values.size else (0, 2 ** bits - 1)
    return float(round((lo + hi) / 2)), float(max(round((hi - lo) * 1.2), 2))


STRIP_ROWS = 256   # pixel work is done in strips: small temporaries stay in cache and heap


LOW_STEP = 4       # the shared low-frequency field is resampled on a grid this much coarser


@lru_cache(maxsize=8)
def _lerp_table(step: int, size: int):
    idx = np.arange(size)
    frac = ((idx % step) / step).astype(np.float32)
    return idx // step, frac


def _upsample_linear(small: np.ndarray, step: int, rows: int, cols: int) -> np.ndarray:
    """Bilinear interpolation of a grid sampled every ``step`` pixels (first sample at 0)."""
    j0, fx = _lerp_table(step, cols)
    t = small[:, j0] * (np.float32(1.0) - fx) + small[:, j0 + 1] * fx
    i0, fy = _lerp_table(step, rows)
    fy = fy[:, None]
    return t[i0] * (np.float32(1.0) - fy) + t[i0 + 1] * fy


def _anatomy_strip(plan, shape, tf, low, var_low, zf, var_fine, y0, val, mask, skin, pectoral) -> None:
    """Tissue, outline, skin, nipple and pectoral for image rows y0.. (outputs written in place)."""
    f32 = np.float32
    rows, cols = plan.rows, plan.cols
    n = zf.shape[0]
    # Image pixel -> breast frame, and -> the shared low-frequency grid.
    m = positioning.image_to_breast_matrix(tf)
    y = np.arange(y0, y0 + n, dtype=f32)[:, None]
    x = np.arange(cols, dtype=f32)[None, :]
    rows_b = f32(m[0, 0]) * y + f32(m[0, 1]) * x + f32(m[0, 2])
    cols_b = f32(m[1, 0]) * y + f32(m[1, 1]) * x + f32(m[1, 2])
    cell = tissue.LOW_GRID_EXTENT * rows / low.shape[0]
    origin = -(tissue.LOW_GRID_EXTENT - 1.0) / 2.0 * rows
    a = m[:2, :2] / cell
    # The low field is smooth: resample it on every LOW_STEP-th pixel, then interpolate.
    step = LOW_STEP
    small = affine_transform(low, a * step, offset=(m[:2, 2] - origin) / cell + a[:, 0] * y0,
                             output_shape=((n - 1) // step + 2, (cols - 1) // step + 2),
                             order=1, mode="nearest")
    zl = _upsample_linear(small, step, n, cols)
    geo = anatomy.breast_geometry(rows_b, cols_b, shape, tf.compression,
                                  wobble=zl * f32(0.012 / np.sqrt(var_low)))
    norm = f32(1.0 / np.sqrt(var_low + var_fine))
    fine = zf * norm
    z = zl * norm + fine
    dist_mm = geo.skin_distance * f32(plan.spacing_mm)
    env = np.clip(dist_mm * f32(1.0 / 12.0), 0, 1)
    gland = tissue.glandular_fraction(z, plan.density, env, np.clip(dist_mm * f32(1.0 / 45.0), 0, 1))
    thick = f32(0.60) + f32(0.40) * np.sqrt(np.clip(dist_mm * f32(1.0 / 22.0), 0, 1))
    v = thick * (f32(0.28) + f32(0.34) * gland) + f32(0.08) * fine * (f32(0.4) + gland)
    v += f32(0.05) * np.exp(-(np.maximum(dist_mm, 0) * f32(1.0 / 1.4)) ** 2)    # skin line
    if geo.pectoral is not None:
        pec = geo.pectoral
        # Muscle: bright, brightest along the chest wall, with a faint fibre texture.
        fade = np.clip(f32(1.0) - x * f32(1.0 / max(shape.pectoral_width, 1.0)), 0, 1)
        muscle = f32(0.62) + f32(0.07) * fade + f32(0.012) * z + f32(0.08) * fine
        v = v * (f32(1.0) - pec) + pec * muscle
        pectoral[...] = pec
    v[geo.nipple] += f32(0.03)
    val[...] = v
    mask[...] = geo.mask
    skin[...] = geo.skin_distance


FINE_MARGIN = 0.15   # the breast-frame texture grid extends this many image heights on each side


def _positioned_fine_field(rng, tf, shape, beta):
    """The fine texture drawn on a breast-frame grid larger than the image (margin for the
    positioning) and resampled into the image through ``tf`` (cubic spline).  Scaled so that its
    variance matches ``tissue.fine_field`` on the image's own grid (the variance of that field
    grows with the grid's area)."""
    rows, cols = shape
    pad = int(np.ceil(FINE_MARGIN * rows))
    grid = (rows + 2 * pad, cols + 2 * pad)
    field, var = tissue.fine_field(rng, grid, beta, image_rows=rows)
    ratio = rows * cols / float(grid[0] * grid[1])
    m = positioning.image_to_breast_matrix(tf)
    out = affine_transform(field, m[:2, :2], offset=m[:2, 2] + pad, output_shape=shape, order=3,
                           mode="nearest")
    out *= np.float32(np.sqrt(ratio))
    return out.astype(np.float32, copy=False), var * ratio


def render_image(plan: PatientPlan, study: int, laterality: str, view: str) -> RenderedImage:
    f32 = np.float32
    rows, cols = plan.rows, plan.cols
    img_key = IMAGE_ORDER.index((laterality, view))
    rng = rng_for(plan.seed, plan.index, 1, study, img_key)
    tf = positioning.sample_transform(rng, (rows, cols))
    kinds, art_rng = [], None
    if plan.artefacts != "none":
        # Own stream: with the option off nothing here is drawn and the pixels stay the same.
        art_rng = rng_for(plan.seed, plan.index, artefacts.ARTEFACT_PURPOSE, study, img_key)
        more_scale, more_compression = artefacts.extra_positioning(art_rng)
        tf = dataclasses.replace(tf, scale=tf.scale * more_scale,
                                 compression=tf.compression * more_compression)
        kinds = artefacts.draw(art_rng, plan.artefacts)
    shape = plan.shapes[view][laterality]
    sp = plan.spacing_mm
    identical = plan.pair_variation == "positioning-only"

    low, var_low = tissue.shared_low_field(rng_for(plan.seed, plan.index, 2, VIEWS.index(view)),
                                           (rows, cols), plan.beta)
    if identical:
        # One breast for both sides: compression and fine texture drawn once per study and
        # view, the texture in the breast frame and carried into the image by its positioning.
        shared = rng_for(plan.seed, plan.index, 6, study, VIEWS.index(view))
        tf = dataclasses.replace(tf, compression=float(shared.uniform(0.95, 1.05)))
        zf, var_fine = _positioned_fine_field(shared, tf, (rows, cols), plan.beta)
    else:
        zf, var_fine = tissue.fine_field(rng, (rows, cols), plan.beta)
    val = np.empty((rows, cols), dtype=f32)
    mask = np.empty((rows, cols), dtype=bool)
    skin = np.empty((rows, cols), dtype=f32)
    pectoral = np.empty((rows, cols), dtype=f32) if view == "MLO" else None
    for y0 in range(0, rows, STRIP_ROWS):
        y1 = min(rows, y0 + STRIP_ROWS)
        _anatomy_strip(plan, shape, tf, low, var_low, zf[y0:y1], var_fine, y0,
                       val[y0:y1], mask[y0:y1], skin[y0:y1], None if pectoral is None else pectoral[y0:y1])
    del zf
    # Vessels: fixed per breast and view (the same in priors), faded in the pectoral muscle.
    vessel_side = 0 if identical else "LR".index(laterality)
    paths = vessels.vessel_paths(rng_for(plan.seed, plan.index, 5, VIEWS.index(view), vessel_side),
                                 shape, sp)
    lines = vessels.draw_vessels(paths, tf, (rows, cols))
    if pectoral is not None:
        lines *= 1.0 - pectoral
    lines[~mask] = 0
    val += lines
    del lines

    found = []
    if plan.lesion is not None and plan.studies[study].has_lesion and laterality == plan.lesion_side:
        # Own generator: the same image without its lesion differs only inside the lesion's box.
        rec = lesions.place_lesion(rng_for(plan.seed, plan.index, 4, study, img_key), plan.lesion,
                                   val, mask, pectoral, skin, sp)
        if rec is not None:
            found.append(rec)

    # Detector: quantum + electronic noise, gain, quantisation; padding outside the breast.
    top = 2 ** plan.bits_stored - 1
    pixels = np.empty((rows, cols), dtype=np.uint16)
    for y0 in range(0, rows, STRIP_ROWS):
        y1 = min(rows, y0 + STRIP_ROWS)
        v = val[y0:y1]
        noise = rng.standard_normal(v.shape, dtype=np.float32)
        v = v + (f32(0.003) + f32(0.006) * np.sqrt(np.maximum(v, 0))) * noise
        level = np.rint(np.clip(v * f32(0.85 * top), 1, top))
        level[~mask[y0:y1]] = 0
        pixels[y0:y1] = level
    del val
    wc, ww = _window(pixels[::7, ::7][mask[::7, ::7]], plan.bits_stored)

    mirrored = laterality == "R"
    if mirrored:
        pixels, mask = pixels[:, ::-1], mask[:, ::-1]
        for rec in found:
            x0, y0, x1, y1 = rec["box"]
            rec["box"] = [cols - x1, y0, cols - x0, y1]
            rec["center"] = [rec["center"][0], cols - 1 - rec["center"][1]]
    st = plan.studies[study]
    if st.burned_label:
        text = labels.burn_label(f"{laterality} {view}", (rows, cols), chest_wall_left=not mirrored)
        pixels = np.where(text & ~mask, np.uint16(top), pixels)
    art_mask, art_record = None, None
    if art_rng is not None:
        pixels, mask, art_mask, boxes = artefacts.apply(
            art_rng, kinds, pixels, mask, top, plan.artefacts, chest_wall_left=not mirrored,
            laterality=laterality)
        if st.burned_label:
            art_mask |= text
        art_record = {"medium": plan.artefacts, "kinds": kinds, "boxes": boxes}
    photometric = st.photometric
    padding = 0
    if photometric == "MONOCHROME1":
        pixels = (top - pixels).astype(np.uint16)
        padding, wc = top, float(top - wc)
    record = {
        "patient_index": plan.index, "study_number": study, "laterality": laterality, "view": view,
        "rows": rows, "cols": cols, "pixel_spacing_mm": round(sp, 6),
        "bits_stored": plan.bits_stored, "photometric": photometric, "padding_value": padding,
        "window_center": wc, "window_width": ww, "voi_lut_function": st.voi_function,
        "burned_in_label": st.burned_label, "mirrored": mirrored,
        "transform": tf.as_dict(), "shape": shape.as_dict(),
        "density": plan.density, "beta": round(plan.beta, 6), "birads": st.birads[laterality],
        "age": plan.age, "split": plan.split, "patient_outcome": plan.outcome,
        "lesions": found,
    }
    if art_record is not None:
        record["artefacts"] = art_record
    return RenderedImage(np.ascontiguousarray(pixels), np.ascontiguousarray(mask), record, art_mask)


def render_exam(seed: int, index: int = 0, image_size=None, layout: str = "vindr",
                lesion_fraction: float = 0.3, studies_per_patient=(1, 2),
                pair_variation: str = "realistic", artefacts: bool = False):
    """All images of one patient in memory: (plan, [[RenderedImage x4] per study])."""
    plan = plan_patient(seed, index, layout, image_size, lesion_fraction, studies_per_patient,
                        pair_variation, artefacts)
    return plan, [[render_image(plan, k, lat, view) for lat, view in IMAGE_ORDER]
                  for k in range(len(plan.studies))]
