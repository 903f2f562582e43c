"""Benchmark of ``ingest.register``: seconds per pair and corner error on known positioning.

    python -m ingest.register_bench [--pairs 5] [--size 1152 896] [--threads 1]

Each synthetic pair is a phantom breast and a copy of it moved by a known rigid transform
(rotation up to 5 degrees, shift up to 20 pixels), each side with its own fine noise. Prints, per
configuration, the median seconds per pair, the median (over pairs) of the median corner error
in pixels, and the speed ratio against a naive full-resolution, 100%-sampling baseline measured
in the same run.
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
    "naive full-res 100%": dict(shrink=(1,), sampling=1.0, iterations=200),
    "paper-like 4/2/1 2%": dict(shrink=(4, 2, 1), sampling=0.02),
    "finer 8/4/2 5%": dict(shrink=(8, 4, 2), sampling=0.05),
    "default 8/4 10%": dict(),
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


def main(argv=None) -> int:
    parser = Parser(prog="python -m ingest.register_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=positive_int, default=5)
    parser.add_argument("--size", type=positive_int, nargs=2, default=(1152, 896), metavar=("H", "W"))
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--baseline-pairs", type=positive_int, default=1,
                        help="pairs for the slow naive baseline (default 1)")

    def command(args):
        rows = run(args.pairs, tuple(args.size), args.threads, baseline_pairs=args.baseline_pairs)
        print(f"registration, {args.size[0]}x{args.size[1]}, {args.threads} thread(s), "
              f"medians over pairs")
        print(f"{'config':24s} {'pairs':>5s} {'s/pair':>8s} {'corner px':>9s} {'worst px':>8s} "
              f"{'dice':>6s} {'speed vs naive':>14s}")
        for r in rows:
            print(f"{r['config']:24s} {r['pairs']:5d} {r['seconds']:8.3f} {r['corner_px']:9.3f} "
                  f"{r['worst_px']:8.3f} {r['dice']:6.3f} {r['speedup']:13.1f}x")
        return 0

    parser.set_defaults(func=command)
    return run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
