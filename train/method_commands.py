"""``train siamese``, ``train simclr``, ``train byol``: one method's pretraining on a pair
shard set. Every flag is a field of ``train.config.TrainConfig``; a method's command hides the
fields only other methods read."""
from __future__ import annotations

import sys
from pathlib import Path

from shards.cmdline import UsageError
from train import config as config_mod

HELP = {
    "siamese": "train two cross-labelled Siamese networks (the paper's method) on pair shards",
    "simclr": "train the SimCLR baseline (NT-Xent over two augmented views of each patch)",
    "byol": "train the BYOL baseline (online network predicts an EMA target's projection)",
}


def other_methods_fields(name: str) -> tuple:
    from train.methods import METHODS, method_class

    own = set(method_class(name).own_fields)
    return tuple(f for other in METHODS if other != name
                 for f in method_class(other).own_fields if f not in own)


def register(sub) -> None:
    for name, text in HELP.items():
        p = sub.add_parser(name, help=text, description=f"{text[0].upper()}{text[1:]}. Every "
                           "flag below is a field of train.config.TrainConfig.")
        config_mod.add_arguments(p, skip=("method", *other_methods_fields(name)))
        p.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last.pt (mid-epoch), with the "
                            "config saved there; --shards, if given, says where the shards now "
                            "are")
        p.add_argument("--stop-at", type=int, default=0, metavar="STEP",
                       help="leave after STEP steps with a checkpoint, as a pre-empted job "
                            "would (the schedule still spans the whole run)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=run, method=name)


def config_for(args) -> config_mod.TrainConfig:
    """The run's config: the one saved in ``--out`` when resuming, else the flags'."""
    from train.checkpoint import load_checkpoint

    out = Path(args.out)
    if args.resume:
        last = out / "last.pt"
        if not last.is_file():
            raise UsageError(f"{last}: no checkpoint to resume from")
        saved = config_mod.TrainConfig.from_dict(load_checkpoint(last)["config"])
        if saved.method != args.method:
            raise UsageError(f"{out} holds a {saved.method} run, not {args.method}")
        return saved.replace(out=str(out), **({"shards": args.shards} if args.shards else {}))
    if not args.shards:
        raise UsageError("--shards ROOT_OR_URL is required")
    if (out / "last.pt").exists():
        raise UsageError(f"{out} already holds a run (last.pt): use --resume or another --out")
    return config_mod.from_args(args)


def run(args) -> int:
    from train import loop

    if not args.out:
        raise UsageError("--out RUN is required")
    try:
        config = config_for(args)
        result = loop.train(config, resume=args.resume, stop_at=args.stop_at,
                            progress=not args.no_progress)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UsageError(_one_line(exc)) from None
    metric = next(k for k in result.best if k not in ("step", "epoch"))
    print(f"train {config.method}: {result.steps} steps, {result.epochs} epochs in "
          f"{result.seconds:.1f} s; last loss {_fmt(result.last_loss)}; best val "
          f"{metric.replace('_', ' ')} {_fmt(result.best.get(metric))} (step "
          f"{result.best.get('step')}); run in {args.out}", file=sys.stdout)
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split())
