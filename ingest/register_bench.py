"""Benchmark of ``ingest.register``: seconds per pair and corner error against known truth.

    python -m ingest.register_bench [--pairs 5] [--exams 0] [--seed 0] [--phantoms 1]
                                    [--variation both] [--size 1152 896] [--threads 1]

Two kinds of pairs:

* phantom pairs (``--pairs``): a phantom breast and a copy of it moved by a known rigid transform
  (rotation up to 5 degrees, shift up to 20 pixels), each side with its own fine noise. Prints,
  per configuration, the median seconds per pair, the median (over pairs) of the median corner
  error in pixels, and the speed ratio against a naive full-resolution, 100%-sampling baseline
  measured in the same run;
* generated exams (``--exams N``, ``ingest.synth`` at ``--size``, seed ``--seed``): the left and
  right images of each view, normalised as the pipeline does (the right one mirrored). The true
  left → right map (``exam_pairs``, ``truth_transform``) composes each side's normalisation
  with the generator's positioning (``ingest.synth.positioning.pair_matrix``); ``truth_check``
  verifies it (the right image warped by it correlates with the left far better than unwarped).
  Two sets side by side (``--variation``): positioning-only exams (the right breast is the left
  one mirrored, so the sides differ only by their known positioning and noise: the truth is
  exact, the acceptance set) and realistic ones (the sides share only the tissue's low
  frequencies: the truth holds only up to their genuine differences, so the error there is a
  floor). Prints, per configuration and set, seconds per pair, the median corner error, the
  worst pair, the median error over the breast and the error ratio against the previous default
  measured in the same run; "from the truth" starts the default AT the true map, so its error is
  the metric's own optimum.
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import SimpleITK as sitk

from ingest.phantom import phantom, to_uint16
from ingest.register import corner_error, register_pair, to_sitk, transform_to_dict
from shards.cmdline import Parser, positive_int, run_main


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
CONFIGS = {
    # name: keyword arguments of register_pair
    "naive full-res 100%": dict(transform="rigid", shrink=(1,), sampling=1.0, iterations=200,
                                metric="mattes", band=None, metric_margin=0, min_step=1e-3),
    "previous default": PREVIOUS,
    "default": dict(),
    "default, rigid": dict(transform="rigid"),
    "default, finer 8/4": dict(shrink=(8, 4), band=(8.0, 60.0)),
}


def run(pairs: int, shape, threads: int, configs=CONFIGS, baseline_pairs: int = 1) -> list[dict]:
    data = [known_pair(shape, seed=s) for s in range(pairs)]
    rows = []
    for name, kwargs in configs.items():
        n = baseline_pairs if name.startswith("naive") else pairs
        seconds, errors, dices = [], [], []
        for fixed, moving, fm, mm, truth in data[:n]:
            t0 = time.perf_counter()
            reg = register_pair(fixed, moving, fm, mm, threads=threads, **kwargs)
            seconds.append(time.perf_counter() - t0)
            errors.append(corner_error(reg.transform, truth, shape))
            dices.append(reg.dice_after)
        rows.append({"config": name, "pairs": n, "seconds": statistics.median(seconds),
                     "corner_px": statistics.median(errors), "worst_px": max(errors),
                     "dice": statistics.median(dices)})
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = base / row["seconds"]
    return rows


def exam_pairs(exams: int, shape=(1152, 896), seed: int = 0, image_size=None,
               pair_variation: str = "realistic", lesion_fraction: float | None = None):
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
    """
    if lesion_fraction is None:
        lesion_fraction = 0.0 if pair_variation == "positioning-only" else 0.3
    from ingest.normalize import normalize_array
    from ingest.synth import render_exam
    from ingest.synth.positioning import pair_matrix

    for index in range(exams):
        plan, studies = render_exam(seed, index, image_size=image_size or shape, lesion_fraction=lesion_fraction,
                                    studies_per_patient=(1, 1), pair_variation=pair_variation)
        by_key = {(im.record["laterality"], im.record["view"]): im for im in studies[0]}
        for view in ("CC", "MLO"):
            norm = {}
            for side in ("L", "R"):
                im = by_key[(side, view)]
                rec = im.record
                top = float(2 ** rec["bits_stored"] - 1)
                unit = im.pixels.astype(np.float32) / top
                if rec["photometric"] == "MONOCHROME1":
                    unit = 1.0 - unit
                padding = im.pixels == rec["padding_value"]
                norm[side] = normalize_array(np.where(padding, 0, unit), padding, out_shape=shape)
            if norm["L"].flipped or not norm["R"].flipped:
                raise AssertionError("normalisation should mirror the right breast only")
            m = pair_matrix(by_key[("L", view)].record, by_key[("R", view)].record)
            yield norm["L"], norm["R"], truth_transform(m, norm["L"].scale, norm["R"].scale)


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


EXAM_CONFIGS = {
    "naive: previous default": PREVIOUS,
    "previous, similarity": {**PREVIOUS, "transform": "similarity"},
    "default": dict(),
    "default, rigid": dict(transform="rigid"),
    "default, affine": dict(transform="affine"),
    "default, Mattes MI": dict(metric="mattes"),
    "default, finer 8/4": dict(shrink=(8, 4), band=(8.0, 60.0)),
    "default, no band-pass": dict(band=None),
    "default, margin 4%": dict(metric_margin=0.04),
    "default, no band refine": dict(band_refine=0),
    "default from the truth": dict(initial="truth"),
}


def run_exams(exams: int, shape, threads: int, configs=EXAM_CONFIGS, seed: int = 0,
              image_size=None, pair_variation: str = "realistic") -> tuple[list[dict], list[dict]]:
    """Rows per configuration (medians over pairs) and the truth checks per pair.

    "from the truth": the default started AT the true transform; where it ends is the optimum of
    the metric itself, so its error is what no optimiser setting can improve on.
    """
    pairs = list(exam_pairs(exams, shape, seed, image_size, pair_variation))
    checks = [truth_check(left, right, truth) for left, right, truth in pairs]
    rows = []
    for name, kwargs in configs.items():
        seconds, corners, breasts, dices, nccs = [], [], [], [], []
        for left, right, truth in pairs:
            kw = dict(kwargs)
            if kw.get("initial") == "truth":
                kw["initial"] = as_similarity(truth)
            t0 = time.perf_counter()
            reg = register_pair(left.pixels, right.pixels, left.mask, right.mask,
                                threads=threads, **kw)
            seconds.append(time.perf_counter() - t0)
            corners.append(corner_error(reg.transform, truth, shape))
            breasts.append(breast_error(reg.transform, truth, left.mask))
            dices.append(reg.dice_after)
            nccs.append(reg.ncc_after)
        rows.append({"config": name, "pairs": len(pairs), "seconds": statistics.median(seconds),
                     "corner_px": statistics.median(corners), "worst_px": max(corners),
                     "breast_px": statistics.median(breasts),
                     "dice": statistics.median(dices), "ncc": statistics.median(nccs),
                     "errors": corners})
    base = rows[0]
    for row in rows:
        row["speedup"] = base["seconds"] / row["seconds"]
        row["error_ratio"] = base["corner_px"] / row["corner_px"] if row["corner_px"] > 0 else float("inf")
    return rows, checks


VARIATIONS = ("positioning-only", "realistic")


def exam_report(exams: int, shape, threads: int, seed: int = 0, variations=VARIATIONS,
                configs=EXAM_CONFIGS) -> dict:
    """Run the exam configurations on each pair variation and print them side by side
    (positioning-only: the acceptance set, exact truth; realistic: the floor set by the genuine
    left/right differences). Returns {variation: (rows, checks)}."""
    results = {v: run_exams(exams, shape, threads, configs, seed=seed, pair_variation=v)
               for v in variations}
    print(f"\ngenerated exams (ingest.synth seed {seed}), {exams} exam(s), CC and MLO pairs, "
          f"{shape[0]}x{shape[1]}, {threads} thread(s), medians over pairs; "
          f"sets: {' / '.join(variations)}")
    for variation, (_, checks) in results.items():
        med = {k: statistics.median(c[k] for c in checks) for k in checks[0]}
        print(f"truth check, {variation} (right warped onto left by the true map / by the identity), "
              "medians: tissue NCC {:.3f} / {:.3f} (truth higher in {}/{} pairs), raw NCC {:.3f} / "
              "{:.3f}, Dice {:.3f} / {:.3f}".format(
                  med["tissue_ncc_truth"], med["tissue_ncc_identity"],
                  sum(c["tissue_ncc_truth"] > c["tissue_ncc_identity"] for c in checks), len(checks),
                  med["ncc_truth"], med["ncc_identity"], med["dice_truth"], med["dice_identity"]))
    sets = len(variations)
    print(acceptance_line(results, shape))
    print(f"{'config':26s} {'pairs':>5s} {'s/pair':>{6 * sets + 1}s} {'corner px':>{7 * sets}s} "
          f"{'worst px':>{7 * sets}s} {'breast px':>{6 * sets}s} {'error vs naive':>{6 * sets}s}")
    names = [r["config"] for r in results[variations[0]][0]]
    for i, name in enumerate(names):
        rows = [results[v][0][i] for v in variations]
        cell = lambda key, fmt: " /".join(format(r[key], fmt) for r in rows)  # noqa: E731
        print(f"{name:26s} {rows[0]['pairs']:5d} {cell('seconds', '6.3f')} {cell('corner_px', '5.2f')} "
              f"{cell('worst_px', '5.2f')} {cell('breast_px', '4.2f')} {cell('error_ratio', '4.1f')}x")
    return results


ACCEPTANCE_PX = 1.0      # median corner error at 1152x896 that the registration aims for


def acceptance_line(results: dict, shape) -> str:
    """The acceptance figure (median corner error <= 1 px at 1152x896, scaled to ``shape``) of
    the default on each pair set, measured rather than asserted: positioning-only pairs meet it;
    realistic left/right pairs share only their low frequencies and stay at about 5-6 px at
    1152x896, the metric's own optimum (docs/ingest-pixels.md, "Accuracy")."""
    bound = ACCEPTANCE_PX * shape[0] / 1152
    cells = []
    for variation, (rows, _) in results.items():
        error = next(r["corner_px"] for r in rows if r["config"] == "default")
        cells.append(f"{variation} {error:.2f} px ({'met' if error <= bound else 'not met'})")
    return (f"acceptance, default, median corner error <= {bound:.2f} px "
            f"({ACCEPTANCE_PX:g} px at 1152x896): " + ", ".join(cells))


def main(argv=None) -> int:
    parser = Parser(prog="python -m ingest.register_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=positive_int, default=5)
    parser.add_argument("--size", type=positive_int, nargs=2, default=(1152, 896), metavar=("H", "W"))
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--baseline-pairs", type=positive_int, default=1,
                        help="pairs for the slow naive baseline (default 1)")
    parser.add_argument("--exams", type=int, default=0,
                        help="also register the CC and MLO pairs of this many generated exams")
    parser.add_argument("--seed", type=int, default=0, help="generator seed of the exams")
    parser.add_argument("--phantoms", type=int, default=1,
                        help="0: skip the phantom pairs (default 1: run them)")
    parser.add_argument("--variation", choices=("both",) + VARIATIONS, default="both",
                        help="generated pair sets: positioning-only (the sides differ only by "
                             "their known positioning), realistic, or both side by side (default)")

    def command(args):
        if args.phantoms:
            phantom_report(args)
        if args.exams > 0:
            variations = VARIATIONS if args.variation == "both" else (args.variation,)
            exam_report(args.exams, tuple(args.size), args.threads, args.seed, variations)
        return 0

    def phantom_report(args):
        rows = run(args.pairs, tuple(args.size), args.threads, baseline_pairs=args.baseline_pairs)
        print(f"registration, {args.size[0]}x{args.size[1]}, {args.threads} thread(s), "
              f"medians over pairs")
        print(f"{'config':24s} {'pairs':>5s} {'s/pair':>8s} {'corner px':>9s} {'worst px':>8s} "
              f"{'dice':>6s} {'speed vs naive':>14s}")
        for r in rows:
            print(f"{r['config']:24s} {r['pairs']:5d} {r['seconds']:8.3f} {r['corner_px']:9.3f} "
                  f"{r['worst_px']:8.3f} {r['dice']:6.3f} {r['speedup']:13.1f}x")

    parser.set_defaults(func=command)
    return run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
