"""``ingest build-shards`` and ``ingest build-downstream``: thin layers over ``ingest.pipeline``.

Flag defaults are read from ``ingest.config.BuildConfig`` (itself from ``ingest.params``)."""
from __future__ import annotations

import argparse
import sys

from ingest.config import BuildConfig
from ingest.params import QualityParams, RegisterParams
from shards import cmdline, codecs
from shards.cmdline import UsageError, fraction, positive_int

DATASETS = ("synthetic", "vindr", "optimam", "dicom", "cbis-ddsm", "rsna")
# Datasets whose labels are per breast only: no ROI to centre a downstream patch on.
WITHOUT_ROIS = ("rsna",)
TASKS = ("abnormal", "birads", "outcome")


def _hxw(shape) -> str:
    return "x".join(str(v) for v in shape)


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


def ratios_arg(text: str) -> tuple[int, int, int]:
    """``"3:1:1"`` → (3, 1, 1): train:val:test shares, non-negative, train and the total positive."""
    try:
        ratios = tuple(int(p) for p in text.split(":"))
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or min(ratios) < 0 or ratios[0] <= 0:
        raise argparse.ArgumentTypeError(
            f"expected TRAIN:VAL:TEST shares, whole numbers, train above 0, e.g. 8:1:1, got {text!r}")
    return ratios


def _transforms() -> list[str]:
    from ingest import register

    return sorted(register.TRANSFORMS)


def _common(p) -> None:
    from ingest.adapters import synthetic

    data = p.add_argument_group("input")
    data.add_argument("--dataset", choices=DATASETS, default="synthetic",
                      help="dataset adapter (default: synthetic, generated on first use)")
    data.add_argument("--root", help="dataset folder (every dataset but synthetic)")
    data.add_argument("--manifest", dest="manifest_csv", metavar="CSV",
                      help="dicom: CSV with a path column and patient/study/laterality/view/... "
                           "that supply or override the headers' values")
    data.add_argument("--patients", type=positive_int,
                      help=f"synthetic: number of patients (default {synthetic.DEFAULT_PATIENTS})")
    data.add_argument("--image-size", type=shape_arg, metavar="HxW",
                      help="synthetic: generated image size "
                           f"(default {_hxw(synthetic.DEFAULT_IMAGE_SIZE)})")
    data.add_argument("--lesion-fraction", type=fraction, default=None, metavar="F",
                      help="synthetic: share of patients with a lesion "
                           f"(default {synthetic.DEFAULT_LESION_FRACTION})")
    data.add_argument("--cache-dir", help="cache folder for the synthetic dataset and the "
                      "registered pairs (default $MAMMO_PAIRS_CACHE or ~/.cache/mammo-pairs)")

    pix = p.add_argument_group("pixels and registration")
    pix.add_argument("--out-shape", type=shape_arg, default=BuildConfig.out_shape, metavar="HxW",
                     help=f"normalised image size (default {_hxw(BuildConfig.out_shape)})")
    pix.add_argument("--transform", choices=_transforms(), default=None,
                     help=f"registration transform (default {RegisterParams.transform})")
    pix.add_argument("--min-dice", type=fraction, default=None,
                     help="quality: least Dice of the breast masks in the alignment kept "
                          f"(default {QualityParams.dice_after})")
    pix.add_argument("--min-ncc", type=float, default=None,
                     help="quality: least correlation inside the breasts after registration "
                          f"(default {QualityParams.ncc_after})")

    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, help="output folder of the shard set")
    out.add_argument("--size", type=positive_int, default=BuildConfig.size,
                     help=f"patch side in pixels (the paper's: 96 or 256; default {BuildConfig.size})")
    out.add_argument("--stride", type=positive_int, help="grid stride (default: --size)")
    out.add_argument("--format", dest="fmt", choices=tuple(codecs.CODECS), default=BuildConfig.fmt,
                     help="pixel encoding, lossless: 16-bit PNG, raw uint16, HTJ2K (JPEG 2000 "
                          "with HT code-blocks, GPU-decodable by DALI) or blosc2 (bit-shuffle "
                          f"+ zstd, fastest on the CPU); docs/shards.md (default {BuildConfig.fmt})")
    out.add_argument("--seed", type=int, default=BuildConfig.seed,
                     help=f"split and shuffle seed (default {BuildConfig.seed})")
    out.add_argument("--splits", type=ratios_arg, default=BuildConfig.splits,
                     metavar="TRAIN:VAL:TEST",
                     help="shares of the train/val/test splits, by patient (build-shards) or by "
                          "patch (build-downstream); larger val/test shares give tighter AUC "
                          f"intervals on small sets (default {':'.join(map(str, BuildConfig.splits))})")
    out.add_argument("--shard-size", type=positive_int, default=BuildConfig.shard_size,
                     help=f"samples per shard (default {BuildConfig.shard_size})")

    out.add_argument("--strict", action="store_true",
                     help="exit 1 when any input was rejected (after writing the shards and "
                          "report.json); without it, rejections are reported and the build "
                          "succeeds")

    run = p.add_argument_group("execution (Dask)")
    cmdline.add_workers(run, None, "local cluster: worker processes (default: CPU count)")
    run.add_argument("--threads-per-worker", type=positive_int,
                     default=BuildConfig.threads_per_worker,
                     help=f"local cluster: threads per worker (default {BuildConfig.threads_per_worker})")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="use this Dask scheduler (tcp://host:port) instead of a local cluster")
    cmdline.add_quiet(run)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "build-shards", help="exams → registered patch-pair shards",
        description="Read a dataset, pair left/right images, normalise and register them into a "
                    "zarr cache, cut the pairs into grid patches and write shuffled shards, "
                    "manifest.json and report.json.")
    _common(p)
    p.add_argument("--max-background", type=fraction, default=BuildConfig.max_background,
                   help="drop a patch pair with more background than this on either side "
                        f"({BuildConfig.max_background})")
    p.add_argument("--max-border-xor", type=fraction, default=BuildConfig.max_border_xor,
                   help="drop a patch pair whose breast masks disagree on more than this "
                        f"fraction of its pixels ({BuildConfig.max_border_xor})")
    p.add_argument("--qc", action="store_true",
                   help="also write the contact sheet of the pairs, rejected and worst first, "
                        "to <out>/qc.png (as `ingest qc`)")
    p.set_defaults(func=run_build_shards)

    d = subparsers.add_parser(
        "build-downstream", help="exams → labelled patch shards (abnormal / birads / outcome)",
        description="The paper's labelled patch sets for linear evaluation, with a patch-level "
                    "split (8:1:1 unless --splits), written through the same shard writer and manifest.")
    _common(d)
    d.add_argument("--task", choices=TASKS, required=True, help="which label")
    d.set_defaults(func=run_build_downstream)


def config_from_args(args) -> BuildConfig:
    if args.dataset != "synthetic" and not args.root:
        raise UsageError(f"--dataset {args.dataset} needs --root")
    if args.dataset == "synthetic" and args.root:
        raise UsageError("--root is for a real dataset's folder; the synthetic dataset is generated")
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
        shard_size=args.shard_size, splits=args.splits, out_shape=tuple(args.out_shape), quality=quality,
        registration=RegisterParams(**({"transform": args.transform} if args.transform else {})),
        cache_dir=args.cache_dir,
        patients=args.patients, image_size=args.image_size,
        lesion_fraction=args.lesion_fraction, workers=args.workers,
        threads_per_worker=args.threads_per_worker, scheduler=args.scheduler,
        progress=not args.quiet, **extra)


def _check_paths(config) -> None:
    import os

    if config.root and not os.path.isdir(config.root):
        raise UsageError(f"--root {config.root}: not a folder")
    if config.manifest_csv and not os.path.isfile(config.manifest_csv):
        raise UsageError(f"--manifest {config.manifest_csv}: not a file")


def finish(data: dict, out: str, strict: bool) -> int:
    """Print the summary; the exit status: 1 for a build with no samples, or any rejection
    under ``--strict`` (report.json is written either way), else 0."""
    from ingest import report

    print(report.summary(data))
    if data.get("empty"):
        print(f"ingest: error: no samples: every input was rejected or gave no patch; "
              f"manifest.json not written, reasons in {out}/report.json", file=sys.stderr)
        return 1
    print(f"wrote {data['shards']} shard(s), manifest.json and report.json to {out}")
    rejected = data["images"]["rejected"]
    if strict and rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in data["images"]["reasons"].items())
        print(f"ingest: error: --strict: {rejected} image(s) rejected ({reasons}); "
              f"see {out}/report.json", file=sys.stderr)
        return 1
    return 0


def run_build_shards(args) -> int:
    from ingest import pipeline

    config = config_from_args(args)
    _check_paths(config)
    data = pipeline.build_shards(config)
    if args.qc and not data.get("empty"):
        from ingest import qc

        print(f"wrote {qc.write_qc(config.out)}")
    return finish(data, config.out, args.strict)


def run_build_downstream(args) -> int:
    from ingest import pipeline

    if args.dataset in WITHOUT_ROIS:
        raise UsageError(f"--dataset {args.dataset} has labels per breast, no ROIs: downstream "
                         "patch tasks need ROI boxes")
    config = config_from_args(args)
    _check_paths(config)
    return finish(pipeline.build_downstream(config, task=args.task), config.out, args.strict)


if __name__ == "__main__":   # pragma: no cover - the console script is `ingest`
    from ingest.cli import main

    sys.exit(main())
