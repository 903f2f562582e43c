"""The ``loaders`` command: ``loaders bench``."""
from __future__ import annotations

import json
import sys

from shards import cmdline, publish
from shards.cmdline import Parser, UsageError, run_main

CPU_BATCH, GPU_BATCH = 64, 256   # loaders bench --batch-size defaults


def _bench(args) -> int:
    from loaders import bench
    from loaders.augment import AugmentSpec

    if args.make_shards:
        roots = bench.make_shards(args.make_shards, pairs=args.pairs, size=args.size,
                                  per_shard=args.per_shard)
        if not args.shards:
            return 0
        # "--shards raw --compare-shards png": the sets just written
        args.shards = roots.get(args.shards, args.shards)
        args.compare_shards = roots.get(args.compare_shards, args.compare_shards)
    if not args.shards:
        raise UsageError("--shards is required (or --make-shards DIR to only write shard sets)")
    backends = ("torch", "dali") if args.backend == "both" else (args.backend,)
    # --size is the patch side of the sets --make-shards writes; the output side defaults to the
    # benchmarked set's patch size (AugmentSpec's size=None)
    size = args.out_size
    spec = AugmentSpec.identity(size) if args.no_augment else AugmentSpec(size=size)
    device = _device(args.device)
    batch_size = args.batch_size or (GPU_BATCH if device is not None else CPU_BATCH)
    result = bench.run(args.shards, mode=args.mode, backends=backends,
                       batch_size=batch_size, seconds=args.seconds,
                       workers=args.workers, repeats=args.repeats, spec=spec,
                       cache_dir=args.cache_dir, compare=args.compare_shards,
                       endpoint=args.endpoint_url, device=device)
    if args.json:
        with publish.atomic_open(args.json, "w", fsync=False, fsync_dir=False) as f:
            json.dump(result, f, indent=1)
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="loaders", description="Loaders for 16-bit patch-pair shards.")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    b = sub.add_parser("bench", help="throughput of the loaders against baselines, same run")
    cmdline.add_shard_set(b, "--shards")
    b.add_argument("--mode", choices=("pairs", "ssl", "labelled"), default="pairs")
    b.add_argument("--backend", choices=("dali", "torch", "both"), default="both")
    b.add_argument("--batch-size", type=cmdline.positive_int, default=None,
                   help=f"default {CPU_BATCH} on the CPU, {GPU_BATCH} when batches go to a GPU "
                        "(a GPU's augmentation needs larger batches to keep it busy)")
    b.add_argument("--seconds", type=float, default=5.0, help="timed seconds per run")
    b.add_argument("--repeats", type=cmdline.positive_int, default=3)
    cmdline.add_workers(b, 2, "DataLoader workers / DALI threads (default 2)")
    b.add_argument("--out-size", type=cmdline.positive_int, default=None,
                   help="augmented output side (default: the patch size)")
    b.add_argument("--compare-shards", default=None, metavar="ROOT_OR_URL",
                   help="another shard set (e.g. the same pixels as PNG) timed in the same "
                        "rounds; prints the throughput ratio")
    b.add_argument("--no-augment", action="store_true",
                   help="only decode and scale (AugmentSpec.identity): the format's own cost")
    b.add_argument("--device", default="auto",
                   help="where batches go: cpu, cuda, cuda:N, or auto (cuda where there is a "
                        "GPU; default)")
    b.add_argument("--cache-dir", default=None, help="local cache for remote shards")
    cmdline.add_endpoint_url(b)
    b.add_argument("--json", default=None, help="write the figures to this JSON file")
    b.add_argument("--make-shards", metavar="DIR", default=None,
                   help="first write tissue-like benchmark sets DIR/<format>, one per pixel "
                        "format (docs/shards.md), of the same pixels")
    b.add_argument("--pairs", type=cmdline.positive_int, default=3000)
    b.add_argument("--size", type=cmdline.positive_int, default=96,
                   help="patch side of the sets --make-shards writes")
    b.add_argument("--per-shard", type=cmdline.positive_int, default=500)
    b.set_defaults(func=_bench)
    return parser


def _device(name: str) -> str | None:
    """``auto``: the GPU where there is one; ``cpu`` is the backends' default (None)."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name != "cpu" and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device here")
    return None if name == "cpu" else name


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
