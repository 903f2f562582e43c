"""``train siamese``: the Siamese soft-label method on a pair shard set."""
from __future__ import annotations

import sys
from pathlib import Path

from shards.cmdline import UsageError
from train import config as config_mod


def register(sub) -> None:
    p = sub.add_parser("siamese", help="train two cross-labelled Siamese networks (the paper's "
                                       "method) on pair shards",
                       description="Train the Siamese soft-label method. Every flag below is a "
                                   "field of train.config.TrainConfig.")
    config_mod.add_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt (mid-epoch), with the "
                        "config saved there; --shards, if given, says where the shards now are")
    p.add_argument("--stop-at", type=int, default=0, metavar="STEP",
                   help="leave after STEP steps with a checkpoint, as a pre-empted job would "
                        "(the schedule still spans the whole run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from train import loop
    from train.checkpoint import load_checkpoint

    if not args.out:
        raise UsageError("--out RUN is required")
    out = Path(args.out)
    try:
        if args.resume:
            last = out / "last.pt"
            if not last.is_file():
                raise UsageError(f"{last}: no checkpoint to resume from")
            saved = config_mod.TrainConfig.from_dict(load_checkpoint(last)["config"])
            config = saved.replace(out=str(out), **({"shards": args.shards} if args.shards
                                                    else {}))
        else:
            if not args.shards:
                raise UsageError("--shards ROOT_OR_URL is required")
            if (out / "last.pt").exists():
                raise UsageError(f"{out} already holds a run (last.pt): use --resume or "
                                 f"another --out")
            config = config_mod.from_args(args)
        result = loop.train(config, resume=args.resume, stop_at=args.stop_at,
                            progress=not args.no_progress)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UsageError(_one_line(exc)) from None
    best = result.best.get("pair_auc")
    print(f"train siamese: {result.steps} steps, {result.epochs} epochs in "
          f"{result.seconds:.1f} s; last loss {_fmt(result.last_loss)}; best val pair AUC "
          f"{_fmt(best)} (step {result.best.get('step')}); run in {out}", file=sys.stdout)
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())
