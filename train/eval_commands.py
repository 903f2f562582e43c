"""``train evaluate``, ``train linear-eval`` and ``train report``: a run's evaluation commands.

Thin layers over ``train.evaluate``, ``train.linear_eval``, ``train.figures`` and
``train.report``; a missing run, checkpoint or shard set is one line and exit code 2.
"""
from __future__ import annotations

import os
from pathlib import Path

from shards.cmdline import UsageError, positive_int


def _check_run(run: str) -> None:
    path = Path(run)
    if not path.is_dir():
        raise UsageError(f"{run}: not a run folder")
    if not (path / "best.pt").is_file() and not (path / "last.pt").is_file():
        raise UsageError(f"{run}: no best.pt or last.pt (has the run written a checkpoint?)")


def _common(p) -> None:
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of the run (default best, else last)")
    p.add_argument("--workers", type=int, default=0, help="loader worker processes (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="pairs or patches per forward pass when embedding (default 256)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--bootstrap", type=int, default=1000,
                   help="bootstrap resamples for the 95%% intervals (default 1000; 0: none)")


def register(subparsers) -> None:
    e = subparsers.add_parser(
        "evaluate", help="pair AUC of a run on val and test, beside a random model",
        description="Pair AUC (Table 1): 100 cutoffs of the abnormal area A, score 1 - q "
                    "averaged over the two networks, D per network beside; writes "
                    "RUN/evaluation.json.")
    e.add_argument("--run", required=True, help="run folder (holds best.pt / last.pt)")
    e.add_argument("--shards", help="shard set (default: the one the run trained on)")
    e.add_argument("--splits", nargs="+", default=["val", "test"], help="default: val test")
    e.add_argument("--max-pairs", type=positive_int, default=None,
                   help="score at most N pairs per split (default all)")
    _common(e)
    e.set_defaults(func=run_evaluate)

    le = subparsers.add_parser(
        "linear-eval", help="linear evaluation on a downstream set, beside a random encoder",
        description="Frozen encoder(s), embeddings cached once, a linear head per encoder "
                    "(Adam, the paper's settings by default) trained on the set's train split; "
                    "AUCs on test (and val); writes RUN/linear_eval_TASK.json.")
    le.add_argument("--run", required=True, help="run folder")
    le.add_argument("--shards", required=True, help="downstream set (ingest build-downstream)")
    le.add_argument("--task", required=True, choices=("abnormal", "birads", "outcome"))
    le.add_argument("--epochs", type=positive_int, default=100, help="head epochs (100)")
    le.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (0.01)")
    le.add_argument("--weight-decay", type=float, default=1e-5, help="Adam weight decay (1e-5)")
    le.add_argument("--head-batch-size", type=positive_int, default=32, help="head batch (32)")
    le.add_argument("--no-standardize", dest="standardize", action="store_false",
                    help="feed raw embeddings to the head (default: standardised with the "
                         "train split's mean and std)")
    le.add_argument("--seed", type=int, default=0, help="head initialisation and order (0)")
    _common(le)
    le.set_defaults(func=run_linear_eval)

    r = subparsers.add_parser(
        "report", help="RUN/report.md: tables shaped like the paper's, figures",
        description="Writes RUN/report.md and RUN/figures/*.png; runs the pair evaluation "
                    "first when RUN/evaluation.json is missing (or with --refresh).")
    r.add_argument("run", help="run folder")
    r.add_argument("--shards", help="shard set (default: the one the run trained on)")
    r.add_argument("--refresh", action="store_true", help="re-run the pair evaluation")
    r.add_argument("--no-figures", dest="figures", action="store_false",
                   help="tables only")
    r.add_argument("--hist-pairs", type=positive_int, default=5000,
                   help="training pairs scored for the D histograms (default 5000)")
    r.add_argument("--map-points", type=positive_int, default=10000,
                   help="test pairs in the t-SNE/UMAP maps (default 10000)")
    _common(r)
    r.set_defaults(func=run_report)


def _guard(fn, *args, **kwargs):
    """Library errors that come from the user's input as one-line usage errors."""
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UsageError(str(message)) from None


def run_evaluate(args) -> int:
    from train import evaluate

    _check_run(args.run)
    result = _guard(evaluate.evaluate_run, args.run, shards=args.shards,
                    splits=tuple(args.splits), which=args.checkpoint, max_pairs=args.max_pairs,
                    n_bootstrap=args.bootstrap, workers=args.workers,
                    batch_size=args.batch_size, device=args.device)
    evaluate.print_evaluation(result)
    print(f"wrote {os.path.join(args.run, 'evaluation.json')}")
    return 0


def run_linear_eval(args) -> int:
    from train import linear_eval

    _check_run(args.run)
    config = linear_eval.HeadConfig(lr=args.lr, weight_decay=args.weight_decay,
                                    batch_size=args.head_batch_size, epochs=args.epochs,
                                    standardize=args.standardize, seed=args.seed)
    result = _guard(linear_eval.linear_eval_run, args.run, args.shards, args.task,
                    config=config, which=args.checkpoint, workers=args.workers,
                    batch_size=args.batch_size, device=args.device,
                    n_bootstrap=args.bootstrap)
    for line in linear_eval.summary_lines(result):
        print(line)
    print(f"patches per class {result['counts']}; "
          f"wrote {os.path.join(args.run, f'linear_eval_{args.task}.json')}")
    return 0


def run_report(args) -> int:
    from train import report

    _check_run(args.run)
    _guard(report.build, args.run, shards=args.shards, refresh=args.refresh,
           figures=args.figures, hist_pairs=args.hist_pairs, map_points=args.map_points,
           which=args.checkpoint, workers=args.workers, batch_size=args.batch_size,
           device=args.device, n_bootstrap=args.bootstrap)
    print(f"wrote {os.path.join(args.run, 'report.md')}")
    return 0
