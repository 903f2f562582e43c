"""``train compare``: pretrain several methods on one pair set and compare them by linear
evaluation on downstream sets (the paper's Tables 2 to 4), resumably."""
from __future__ import annotations

from shards.cmdline import UsageError, positive_int
from train import config as config_mod
from train.compare import METHODS

SKIPPED = ("method", "out", "shards")


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="pretrain siamese, byol, simclr; linear evaluation of each (and of a "
                        "random encoder) on downstream sets; tables like the paper's",
        description="Every method is trained in OUT/<method> with the flags below (a field a "
                    "method does not read is ignored by it), then evaluated on every "
                    "downstream set; writes OUT/comparison.md and OUT/comparison.json. A rerun "
                    "skips finished runs and evaluations and continues an interrupted run.")
    p.add_argument("--pairs", required=True, metavar="ROOT_OR_URL",
                   help="pair shard set the methods pretrain on")
    p.add_argument("--downstream", required=True, nargs="+", metavar="DIR",
                   help="downstream sets (ingest build-downstream), one per task")
    p.add_argument("--out", required=True, help="comparison folder")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated, from {','.join(METHODS)} (default all; random-bn: "
                        "random weights with BatchNorm statistics from the pair set)")
    p.add_argument("--eval-workers", type=int, default=0,
                   help="loader workers when embedding for linear evaluation (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--head-epochs", type=positive_int, default=100,
                   help="linear head epochs (default 100, the paper's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    config_mod.add_arguments(p, skip=SKIPPED)
    p.set_defaults(func=run)


def run(args) -> int:
    from train.compare import compare, parse_methods
    from train.linear_eval import HeadConfig

    try:
        methods = parse_methods(args.methods)
        config = config_mod.from_args(args, shards=args.pairs, out=args.out)
        figures = compare(args.pairs, args.downstream, args.out, config, methods=methods,
                          head=HeadConfig(epochs=args.head_epochs), n_bootstrap=args.bootstrap,
                          workers=args.eval_workers, progress=not args.no_progress)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise UsageError(" ".join(str(text).split())) from None
    for task, per in figures.items():
        for method, h in per.items():
            auc = h and h["auc"]["auc"]
            print(f"train compare: {task} {method:<8} test AUC "
                  f"{'n/a' if auc is None else f'{auc:.3f}'}")
    print(f"train compare: tables in {args.out}/comparison.md")
    return 0
