"""Benchmark of ``ingest.register``: seconds per pair and corner error against known truth.

    python -m ingest.register_bench [--pairs 5] [--exams 0] [--seed 0] [--phantoms 1]
                                    [--variation both] [--size 1152 896] [--threads 1]
                                    [--artefacts {off,on,both}] [--layout vindr]

Two kinds of pairs:

* phantom pairs (``--pairs``): a phantom breast and a copy of it moved by a known rigid transform
  (rotation up to 5 degrees, shift up to 20 pixels), each side with its own fine noise. Prints,
  per configuration, the median CPU seconds per pair, the median (over pairs) of the median corner
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
  floor). Prints, per configuration and set, CPU seconds per pair, the median corner error, the
  worst pair, the median error over the breast and the error ratio against the previous default
  measured in the same run; "from the truth" starts the default AT the true map, so its error is
  the metric's own optimum.

``--artefacts both`` runs every set twice, clean and with the generator's artefacts (film edges
and scanner strips for ``--layout cbis-ddsm``, collimation for the digital layouts, markers,
rulers, text, and larger left/right size and compression differences), and prints the median
error over the breast of each configuration side by side (clean / with artefacts) and its CPU
seconds per pair. Seconds are CPU seconds of this process (``time.process_time``): on one
thread the work itself, whatever else a shared machine runs.
"""
from __future__ import annotations

import statistics
import time

from ingest.register import corner_error, register_pair
from ingest.register_truth import (PREVIOUS, as_similarity, breast_error, exam_pairs, known_pair,
                                   truth_check)
from shards.cmdline import Parser, positive_int, run_main


CONFIGS = {
    # name: keyword arguments of register_pair
    "naive full-res 100%": dict(transform="rigid", shrink=(1,), sampling=1.0, iterations=200,
                                metric="mattes", band=None, metric_margin=0, min_step=1e-3),
    "previous default": PREVIOUS,
    "default": dict(),
    "default, uncut, 1e-4": dict(fixed_crop=0, coarse_min_step=1e-4),
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
            t0 = time.process_time()
            reg = register_pair(fixed, moving, fm, mm, threads=threads, **kwargs)
            seconds.append(time.process_time() - t0)
            errors.append(corner_error(reg.transform, truth, shape))
            dices.append(reg.dice_after)
        rows.append({"config": name, "pairs": n, "seconds": statistics.median(seconds),
                     "corner_px": statistics.median(errors), "worst_px": max(errors),
                     "dice": statistics.median(dices)})
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = base / row["seconds"]
    return rows


# The default before the fixed image was cut to the metric mask and the first pass stopped at a
# 0.01 px step (the same registration otherwise): the speed baseline of those two settings.
UNCUT = dict(fixed_crop=0, coarse_min_step=1e-4)

EXAM_CONFIGS = {
    "naive: previous default": PREVIOUS,
    "previous, similarity": {**PREVIOUS, "transform": "similarity"},
    "default": dict(),
    "default, uncut, 1e-4": UNCUT,
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
              image_size=None, pair_variation: str = "realistic", artefacts: bool = False,
              layout: str = "vindr") -> tuple[list[dict], list[dict]]:
    """Rows per configuration (medians over pairs) and the truth checks per pair.

    "from the truth": the default started AT the true transform; where it ends is the optimum of
    the metric itself, so its error is what no optimiser setting can improve on.
    """
    pairs = list(exam_pairs(exams, shape, seed, image_size, pair_variation, artefacts=artefacts,
                            layout=layout))
    checks = [truth_check(left, right, truth) for left, right, truth in pairs]
    rows = []
    for name, kwargs in configs.items():
        seconds, corners, breasts, dices, nccs = [], [], [], [], []
        for left, right, truth in pairs:
            kw = dict(kwargs)
            if kw.get("initial") == "truth":
                kw["initial"] = as_similarity(truth)
            t0 = time.process_time()
            reg = register_pair(left.pixels, right.pixels, left.mask, right.mask,
                                threads=threads, **kw)
            seconds.append(time.process_time() - t0)
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


def artefact_report(exams: int, shape, threads: int, seed: int = 0, variations=VARIATIONS,
                    configs=None, layout: str = "vindr") -> dict:
    """Median breast-region error (px) of each configuration on clean exams and on exams with
    the generator's artefacts, per pair variation. Returns {(variation, artefacts): rows}."""
    configs = configs or {k: EXAM_CONFIGS[k] for k in ("naive: previous default",
                                                       "default, uncut, 1e-4", "default")}
    results = {(v, a): run_exams(exams, shape, threads, configs, seed=seed, pair_variation=v,
                                 artefacts=a, layout=layout)[0]
               for v in variations for a in (False, True)}
    print(f"\ngenerated exams ({layout} layout, ingest.synth seed {seed}), {exams} exam(s), CC and "
          f"MLO pairs, {shape[0]}x{shape[1]}, {threads} thread(s): median error over the breast "
          "(px), clean / with artefacts; CPU seconds per pair (median of the sets' medians)")
    print(f"{'config':26s} " + " ".join(f"{v:>22s}" for v in variations) + f" {'CPU s/pair':>10s}")
    for i, name in enumerate(configs):
        cells = [f"{results[(v, False)][i]['breast_px']:9.2f} / {results[(v, True)][i]['breast_px']:6.2f}"
                 for v in variations]
        cpu = statistics.median(rows[i]["seconds"] for rows in results.values())
        print(f"{name:26s} " + " ".join(f"{c:>22s}" for c in cells) + f" {cpu:10.3f}")
    return results


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
    parser = Parser(prog="ingest bench-register", description=__doc__.split("\n")[0])
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
    parser.add_argument("--artefacts", choices=("off", "on", "both"), default="off",
                        help="generated exams with the generator's artefacts: off (default), on, or "
                             "both (clean and with artefacts, median breast error side by side)")
    parser.add_argument("--layout", choices=("vindr", "cbis-ddsm", "rsna", "optimam"),
                        default="vindr", help="generator layout of the exams (cbis-ddsm: film)")

    def command(args):
        if args.phantoms:
            phantom_report(args)
        if args.exams > 0:
            variations = VARIATIONS if args.variation == "both" else (args.variation,)
            if args.artefacts == "both":
                artefact_report(args.exams, tuple(args.size), args.threads, args.seed, variations,
                                layout=args.layout)
            else:
                results = {v: run_exams(args.exams, tuple(args.size), args.threads, {"default": {}},
                                        seed=args.seed, pair_variation=v,
                                        artefacts=args.artefacts == "on", layout=args.layout)
                           for v in variations} if args.layout != "vindr" or args.artefacts == "on" else None
                if results is None:
                    exam_report(args.exams, tuple(args.size), args.threads, args.seed, variations)
                else:
                    for v, (rows, _) in results.items():
                        print(f"{args.layout}, {v}, artefacts {args.artefacts}: default, median "
                              f"breast error {rows[0]['breast_px']:.2f} px, corner "
                              f"{rows[0]['corner_px']:.2f} px, {rows[0]['seconds']:.3f} s/pair")
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
