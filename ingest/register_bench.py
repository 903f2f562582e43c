"""Benchmark of ``ingest.register``: seconds per pair and corner error on known positioning.

    python -m ingest.register_bench [--pairs 5] [--size 1152 896] [--threads 1]

Two kinds of pairs:

* phantom pairs: a phantom breast and a copy of it moved by a known rigid transform (rotation up
  to 5 degrees, shift up to 20 pixels), each side with its own fine noise. Prints, per
  configuration, the median seconds per pair, the median (over pairs) of the median corner error
  in pixels, and the speed ratio against a naive full-resolution, 100%-sampling baseline
  measured in the same run;
* generated exams (``--exams N``, ``ingest.synth``): the left and right images of one view,
  normalised as the pipeline does; the generator knows each image's positioning (rotation,
  shift, scale), so the true left → right map is known up to the two breasts' own differences
  (compression, shape asymmetry, texture). Prints the median displacement error over the fixed
  breast's pixels, rigid and affine.
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


CONFIGS = {
    # name: keyword arguments of register_pair
    "naive full-res 100%": dict(shrink=(1,), sampling=1.0, iterations=200, metric_margin=0),
    "paper-like 4/2/1 2%": dict(shrink=(4, 2, 1), sampling=0.02, metric_margin=0),
    "finer 8/4/2 5%": dict(shrink=(8, 4, 2), sampling=0.05),
    "default 8/4 10%": dict(),
    "default, no margin": dict(metric_margin=0),
    "coarse 16/8 10%": dict(shrink=(16, 8), sampling=0.10),
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


def exam_pairs(exams: int, shape=(1152, 896), seed: int = 0):
    """Normalised (left, right) pairs of generated exams with the true left → right point map.

    Yields ``(left NormalizedImage, right NormalizedImage, truth)`` where ``truth(points_xy)``
    maps (x, y) pixel centres of the normalised left image to the normalised right image.
    """
    from ingest.normalize import normalize_array
    from ingest.synth import render_exam
    from ingest.synth.positioning import Transform, breast_to_image_matrix

    for index in range(exams):
        plan, studies = render_exam(seed, index, image_size=shape, studies_per_patient=(1, 1))
        by_key = {(im.record["laterality"], im.record["view"]): im for im in studies[0]}
        for view in ("CC", "MLO"):
            norm, mats = {}, {}
            for side in ("L", "R"):
                im = by_key[(side, view)]
                rec = im.record
                top = float(2 ** rec["bits_stored"] - 1)
                unit = im.pixels.astype(np.float32) / top
                if rec["photometric"] == "MONOCHROME1":
                    unit = 1.0 - unit
                padding = im.pixels == rec["padding_value"]
                norm[side] = normalize_array(np.where(padding, 0, unit), padding, out_shape=shape)
                mats[side] = breast_to_image_matrix(Transform.from_dict(rec["transform"]))
            # canonical image (row, col) of L → breast frame → canonical image of R
            m = mats["R"] @ np.linalg.inv(mats["L"])
            sl, sr = norm["L"].scale, norm["R"].scale

            def truth(points_xy, m=m, sl=sl, sr=sr):
                x, y = points_xy[:, 0], points_xy[:, 1]
                row, col = (y + 0.5) / sl[0] - 0.5, (x + 0.5) / sl[1] - 0.5
                r2 = m[0, 0] * row + m[0, 1] * col + m[0, 2]
                c2 = m[1, 0] * row + m[1, 1] * col + m[1, 2]
                return np.stack([(c2 + 0.5) * sr[1] - 0.5, (r2 + 0.5) * sr[0] - 0.5], axis=1)

            yield norm["L"], norm["R"], truth


def breast_error(transform: dict, truth, mask: np.ndarray, points: int = 2000, seed: int = 0) -> float:
    """Median distance (pixels) between estimated and true maps over points of the breast."""
    from ingest.register import map_points, transform_from_dict

    ys, xs = np.nonzero(mask)
    pick = np.random.default_rng(seed).choice(len(ys), min(points, len(ys)), replace=False)
    pts = np.stack([xs[pick], ys[pick]], axis=1).astype(float)
    est = map_points(transform_from_dict(transform), pts)
    return float(np.median(np.linalg.norm(est - truth(pts), axis=1)))


EXAM_CONFIGS = {
    "default rigid": dict(),
    "default affine": dict(transform="affine"),
    "rigid, no margin": dict(metric_margin=0),
    "affine, no margin": dict(transform="affine", metric_margin=0),
}


def run_exams(exams: int, shape, threads: int, configs=EXAM_CONFIGS) -> list[dict]:
    pairs = list(exam_pairs(exams, shape))
    rows = []
    for name, kwargs in configs.items():
        seconds, errors, dices, nccs = [], [], [], []
        for left, right, truth in pairs:
            t0 = time.perf_counter()
            reg = register_pair(left.pixels, right.pixels, left.mask, right.mask,
                                threads=threads, **kwargs)
            seconds.append(time.perf_counter() - t0)
            errors.append(breast_error(reg.transform, truth, left.mask))
            dices.append(reg.dice_after)
            nccs.append(reg.ncc_after)
        rows.append({"config": name, "pairs": len(pairs), "seconds": statistics.median(seconds),
                     "breast_px": statistics.median(errors), "worst_px": max(errors),
                     "dice": statistics.median(dices), "ncc": statistics.median(nccs)})
    return rows


def main(argv=None) -> int:
    parser = Parser(prog="python -m ingest.register_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=positive_int, default=5)
    parser.add_argument("--size", type=positive_int, nargs=2, default=(1152, 896), metavar=("H", "W"))
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--baseline-pairs", type=positive_int, default=1,
                        help="pairs for the slow naive baseline (default 1)")
    parser.add_argument("--exams", type=int, default=0,
                        help="also register the CC and MLO pairs of this many generated exams")

    def command(args):
        rows = run(args.pairs, tuple(args.size), args.threads, baseline_pairs=args.baseline_pairs)
        print(f"registration, {args.size[0]}x{args.size[1]}, {args.threads} thread(s), "
              f"medians over pairs")
        print(f"{'config':24s} {'pairs':>5s} {'s/pair':>8s} {'corner px':>9s} {'worst px':>8s} "
              f"{'dice':>6s} {'speed vs naive':>14s}")
        for r in rows:
            print(f"{r['config']:24s} {r['pairs']:5d} {r['seconds']:8.3f} {r['corner_px']:9.3f} "
                  f"{r['worst_px']:8.3f} {r['dice']:6.3f} {r['speedup']:13.1f}x")
        if args.exams > 0:
            print(f"\ngenerated exams (ingest.synth), {args.exams} exam(s), CC and MLO pairs; "
                  f"error = median over breast pixels of |estimated - true| left → right map")
            print(f"{'config':24s} {'pairs':>5s} {'s/pair':>8s} {'breast px':>9s} {'worst px':>8s} "
                  f"{'dice':>6s} {'ncc':>6s}")
            for r in run_exams(args.exams, tuple(args.size), args.threads):
                print(f"{r['config']:24s} {r['pairs']:5d} {r['seconds']:8.3f} {r['breast_px']:9.3f} "
                      f"{r['worst_px']:8.3f} {r['dice']:6.3f} {r['ncc']:6.3f}")
        return 0

    parser.set_defaults(func=command)
    return run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
