"""``ingest build-shards`` and ``ingest build-downstream``: thin layers over ``ingest.pipeline``."""
from __future__ import annotations

import argparse
import sys

from shards.cmdline import UsageError, fraction, positive_int

DATASETS = ("synthetic", "vindr", "optimam", "dicom")
TASKS = ("abnormal", "birads", "outcome")


def shape_arg(text: str) -> tuple[int, int]:
    """``"1152x896"`` or ``"1152,896"`` → (1152, 896)."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        h, w = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 1152x896, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return h, w


def _transforms() -> list[str]:
    from ingest import register

    return sorted(register.TRANSFORMS)


def _default_transform() -> str:
    from ingest.pipeline import register_defaults

    return register_defaults()["transform"]


def _common(p) -> None:
    data = p.add_argument_group("input")
    data.add_argument("--dataset", choices=DATASETS, default="synthetic",
                      help="dataset adapter (default: synthetic, generated on first use)")
    data.add_argument("--root", help="dataset folder (vindr, optimam, dicom)")
    data.add_argument("--manifest", dest="manifest_csv", metavar="CSV",
                      help="dicom: CSV with a path column and patient/study/laterality/view/... "
                           "that supply or override the headers' values")
    data.add_argument("--patients", type=positive_int,
                      help="synthetic: number of patients (default 24)")
    data.add_argument("--image-size", type=shape_arg, metavar="HxW",
                      help="synthetic: generated image size (default 1280x1024)")
    data.add_argument("--lesion-fraction", type=fraction, default=None, metavar="F",
                      help="synthetic: share of patients with lesions (default 0.3)")
    data.add_argument("--cache-dir", help="cache folder for the synthetic dataset and the "
                      "registered pairs (default $MAMMO_PAIRS_CACHE or ~/.cache/mammo-pairs)")

    pix = p.add_argument_group("pixels and registration")
    pix.add_argument("--out-shape", type=shape_arg, default=(1152, 896), metavar="HxW",
                     help="normalised image size (default 1152x896)")
    pix.add_argument("--transform", choices=_transforms(), default=None,
                     help="registration transform (default: ingest/register.py's, "
                          f"{_default_transform()})")
    pix.add_argument("--min-dice", type=fraction, default=None,
                     help="quality: least Dice of the breast masks after registration (default 0.85)")
    pix.add_argument("--min-ncc", type=float, default=None,
                     help="quality: least correlation inside the breasts after registration "
                          "(default 0.3)")

    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="output folder of the shard set")
    out.add_argument("--size", type=positive_int, default=96,
                     help="patch side in pixels (the paper's: 96 or 256; default 96)")
    out.add_argument("--stride", type=positive_int, help="grid stride (default: --size)")
    out.add_argument("--format", dest="fmt", choices=("png", "raw"), default="png",
                     help="pixel encoding: 16-bit PNG or raw uint16 (default png)")
    out.add_argument("--seed", type=int, default=0, help="split and shuffle seed (default 0)")
    out.add_argument("--shard-size", type=positive_int, default=1000,
                     help="samples per shard (default 1000)")

    run = p.add_argument_group("execution (Dask)")
    run.add_argument("--workers", type=positive_int,
                     help="local cluster: worker processes (default: CPU count)")
    run.add_argument("--threads-per-worker", type=positive_int, default=1,
                     help="local cluster: threads per worker (default 1)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="use this Dask scheduler (tcp://host:port) instead of a local cluster")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="no progress bars")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-shards", help="exams → registered patch-pair shards",
        description="Read a dataset, pair left/right images, normalise and register them into a "
                    "zarr cache, cut the pairs into grid patches and write shuffled shards, "
                    "manifest.json and report.json.")
    _common(p)
    p.add_argument("--max-background", type=fraction, default=0.5,
                   help="drop a patch pair with more background than this on either side (0.5)")
    p.add_argument("--max-border-xor", type=fraction, default=0.2,
                   help="drop a patch pair whose breast masks disagree on more than this "
                        "fraction of its pixels (0.2)")
    p.set_defaults(func=run_build_shards)

    d = subparsers.add_parser(
        "build-downstream", help="exams → labelled patch shards (abnormal / birads / outcome)",
        description="The paper's labelled patch sets for linear evaluation, with a patch-level "
                    "8:1:1 split, written through the same shard writer and manifest.")
    _common(d)
    d.add_argument("--task", choices=TASKS, required=True, help="which label")
    d.set_defaults(func=run_build_downstream)


def config_from_args(args):
    from ingest.pipeline import BuildConfig, RegistrationSettings

    if args.dataset != "synthetic" and not args.root:
        raise UsageError(f"--dataset {args.dataset} needs --root")
    if args.dataset == "synthetic" and args.root:
        raise UsageError("--root is for vindr, optimam and dicom; the synthetic dataset is generated")
    if args.manifest_csv and args.dataset != "dicom":
        raise UsageError("--manifest is for --dataset dicom")
    if args.size > min(args.out_shape):
        raise UsageError(f"--size {args.size} does not fit the normalised image {args.out_shape}")
    quality = {}
    if args.min_dice is not None:
        quality["dice_after"] = args.min_dice
    if args.min_ncc is not None:
        quality["ncc_after"] = args.min_ncc
    extra = {}
    if hasattr(args, "max_background"):
        extra = {"max_background": args.max_background, "max_border_xor": args.max_border_xor}
    return BuildConfig(
        dataset=args.dataset, out=args.out, size=args.size, root=args.root,
        manifest_csv=args.manifest_csv, stride=args.stride, fmt=args.fmt, seed=args.seed,
        shard_size=args.shard_size, out_shape=tuple(args.out_shape), quality=quality,
        registration=RegistrationSettings(transform=args.transform), cache_dir=args.cache_dir,
        patients=args.patients, image_size=args.image_size,
        lesion_fraction=args.lesion_fraction, workers=args.workers,
        threads_per_worker=args.threads_per_worker, scheduler=args.scheduler,
        progress=args.progress, **extra)


def _check_paths(config) -> None:
    import os

    if config.root and not os.path.isdir(config.root):
        raise UsageError(f"--root {config.root}: not a folder")
    if config.manifest_csv and not os.path.isfile(config.manifest_csv):
        raise UsageError(f"--manifest {config.manifest_csv}: not a file")


def run_build_shards(args) -> int:
    from ingest import pipeline, report

    config = config_from_args(args)
    _check_paths(config)
    try:
        data = pipeline.build_shards(config)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print(report.summary(data))
    print(f"wrote {data['shards']} shard(s), manifest.json and report.json to {config.out}")
    return 0


def run_build_downstream(args) -> int:
    from ingest import pipeline, report

    config = config_from_args(args)
    _check_paths(config)
    try:
        data = pipeline.build_downstream(config, task=args.task)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print(report.summary(data))
    print(f"wrote {data['shards']} shard(s), manifest.json and report.json to {config.out}")
    return 0


if __name__ == "__main__":   # pragma: no cover - the console script is `ingest`
    from ingest.cli import main

    sys.exit(main())
