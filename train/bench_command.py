"""``train bench``: training steps per second with the real loader against the same loop fed
from batches in memory."""
from __future__ import annotations

import json

from shards import publish
from shards.cmdline import UsageError, positive_int
from train import config as config_mod

BENCH_DEFAULTS = {"encoder": "small", "batch_size": 64, "epochs": 1, "warmup_epochs": 0.0}
SKIPPED = ("out", "val_split", "refit_epochs", "refit_steps", "mixture_max_pairs", "prior_p",
           "checkpoint_every", "eval_every", "val_max_pairs", "log_every", "max_steps",
           "warmup_epochs", "epochs", "val_bootstrap", "mixture")


def register(sub) -> None:
    p = sub.add_parser("bench", help="training steps/s: real loader vs batches in memory")
    config_mod.add_arguments(p, skip=SKIPPED, defaults=BENCH_DEFAULTS)
    p.add_argument("--steps", type=positive_int, default=10, help="timed steps per round")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    p.add_argument("--repeats", type=positive_int, default=3, help="rounds (medians reported)")
    p.add_argument("--make-shards", metavar="DIR", default=None,
                   help="first write a tissue-like pair set to DIR/png and train on it")
    p.add_argument("--pairs", type=positive_int, default=3000)
    p.add_argument("--per-shard", type=positive_int, default=500)
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    p.set_defaults(func=run)


def run(args) -> int:
    from loaders.bench import make_shards
    from train.bench import run_bench

    if args.make_shards:
        args.shards = make_shards(args.make_shards, pairs=args.pairs, size=args.size,
                                  per_shard=args.per_shard, formats=("png",))["png"]
    if not args.shards:
        raise UsageError("--shards is required (or --make-shards DIR)")
    try:
        config = config_mod.from_args(args, **{k: v for k, v in BENCH_DEFAULTS.items()
                                               if k in SKIPPED})
        result = run_bench(config, steps=args.steps, warmup=args.warmup_steps,
                           repeats=args.repeats)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UsageError(" ".join(str(exc.args[0] if isinstance(exc, KeyError) else exc)
                                  .split())) from None
    unit = "pairs" if config.method == "siamese" else "patches"   # a step's examples
    print(f"train bench: {config.method}, {result['encoder']} at {result['size']} px, batch "
          f"{result['batch_size']}, {result['precision']} on {result['device']} "
          f"({result['device_name']}, {result['torch_threads']} threads): real loader "
          f"{result['real_steps_per_s']:.3f} steps/s ({result['real_pairs_per_s']:.1f} {unit}/s), "
          f"in memory {result['memory_steps_per_s']:.3f} steps/s "
          f"({result['memory_pairs_per_s']:.1f} {unit}/s), ratio {result['ratio']:.3f}")
    if args.json:
        publish.write_text(args.json, json.dumps(result, indent=1))
    return 0
