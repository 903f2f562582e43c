"""A training run's parameters, in one frozen dataclass: the one place for their defaults.

``TrainConfig`` is saved in every checkpoint and as ``RUN/config.json`` so a run can be read,
resumed and evaluated without the command line that started it. The command line is generated
from the fields (``add_arguments`` / ``from_args``), so a flag and its default cannot drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, field, fields

MIXTURES = ("gmm", "beta")
METHOD_NAMES = ("siamese", "simclr", "byol")
PRECISIONS = ("auto", "bf16", "fp32")


def _opt(default, help_text: str, **extra):
    """A dataclass field with its command-line help."""
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True)
class TrainConfig:
    # data
    shards: str = _opt("", "shard set root or URL (local, http(s)://, s3://) holding manifest.json")
    out: str = _opt("", "run folder (config.json, metrics.jsonl, last.pt, best.pt)")
    split: str = _opt("train", "training split of the shard set")
    val_split: str = _opt("val", "validation split (pair AUC each epoch; '' to skip)")
    size: int = _opt(96, "side of the augmented patches fed to the encoder")
    backend: str = _opt("torch", "loader backend", choices=("torch", "dali"))
    workers: int = _opt(2, "DataLoader workers / DALI threads")
    cache_dir: str | None = _opt(None, "local cache for remote shards")
    endpoint: str | None = _opt(None, "S3 endpoint URL (default: AWS_ENDPOINT_URL[_S3])")
    # model and method
    method: str = _opt("siamese", "training method", choices=METHOD_NAMES)
    encoder: str = _opt("resnet18", "encoder name (see train.encoders.ENCODERS)")
    mixture: str = _opt("gmm", "soft-label mixture on D: two-component Gaussian (the paper) or "
                        "Beta on D scaled into (0, 1)", choices=MIXTURES)
    prior_p: str = _opt("fit", "P before the first refit: 'fit' = fit the mixture on the "
                        "untrained encoders' distances before step 0; a number in [0, 1] = that "
                        "constant P for every pair")
    refit_epochs: int = _opt(1, "refit the mixtures after every N epochs (0: never)")
    refit_steps: int = _opt(0, "also refit every N steps (0: off)")
    mixture_max_pairs: int = _opt(0, "distances the mixture is fitted on, a seeded subset "
                                  "(0: all); every pair is still scored for its label")
    max_background: float = _opt(1.0, "pairs with a larger background fraction on either side "
                                 "are left out of the mixture fit and the loss (1: keep all)")
    temperature: float = _opt(0.1, "SimCLR: NT-Xent temperature")
    ema_base: float = _opt(0.996, "BYOL: the target network's momentum at step 0 (rises to 1 "
                           "on a cosine schedule)")
    head_hidden: int = _opt(0, "SimCLR/BYOL: hidden width of the projector (and BYOL's "
                            "predictor); 0: the method's paper (SimCLR 2048, BYOL 4096)")
    head_out: int = _opt(0, "SimCLR/BYOL: projection size; 0: the method's paper (SimCLR 128, "
                         "BYOL 256)")
    # optimisation
    batch_size: int = _opt(256, "pairs per optimiser step on each rank")
    sub_batches: int = _opt(1, "split each step's batch into N sub-batches (gradient "
                            "accumulation; BatchNorm sees sub-batches)")
    epochs: int = _opt(100, "epochs (the learning-rate schedule spans them)")
    max_steps: int = _opt(0, "cap on optimiser steps, schedule included (0: epochs decide)")
    lr: float = _opt(0.0, "peak learning rate (0: base_lr x batch x world / 256)")
    base_lr: float = _opt(0.0, "learning rate per 256 samples when --lr is 0 (0: the "
                          "method's: 0.3 Siamese and SimCLR, 0.2 BYOL)")
    warmup_epochs: float = _opt(10.0, "linear warm-up length in epochs (then cosine to 0)")
    weight_decay: float = _opt(1e-6, "LARS weight decay (not on BN or bias)")
    momentum: float = _opt(0.9, "LARS momentum")
    trust: float = _opt(1e-3, "LARS trust coefficient")
    # machinery
    seed: int = _opt(0, "seed (model initialisation, loader order and augmentation)")
    device: str = _opt("auto", "cpu, cuda, cuda:N or auto")
    precision: str = _opt("auto", "auto = bf16 autocast on CUDA, fp32 on the CPU",
                          choices=PRECISIONS)
    compile: bool = _opt(False, "torch.compile the encoders")
    checkpoint_every: int = _opt(0, "also write last.pt every N steps (0: end of epochs only)")
    eval_every: int = _opt(1, "validation pair AUC every N epochs (0: never)")
    val_max_pairs: int = _opt(0, "validation pairs scored (0: all)")
    val_bootstrap: int = _opt(200, "bootstrap resamples for the validation AUC's interval "
                              "(0: none)")
    log_every: int = _opt(1, "a training row in metrics.jsonl every N steps")

    def __post_init__(self):
        if self.method not in METHOD_NAMES:
            raise ValueError(f"method must be one of {METHOD_NAMES}, got {self.method!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.ema_base <= 1.0:
            raise ValueError(f"ema_base must be in [0, 1], got {self.ema_base}")
        if self.mixture not in MIXTURES:
            raise ValueError(f"mixture must be one of {MIXTURES}, got {self.mixture!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.batch_size < 1 or self.sub_batches < 1 or self.batch_size % self.sub_batches:
            raise ValueError(f"batch_size {self.batch_size} must be a positive multiple of "
                             f"sub_batches {self.sub_batches}")
        for name in ("epochs", "max_steps", "refit_epochs", "refit_steps", "checkpoint_every",
                     "eval_every", "workers", "mixture_max_pairs", "val_max_pairs",
                     "val_bootstrap", "head_hidden", "head_out"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.epochs == 0 and self.max_steps == 0:
            raise ValueError("give epochs or max_steps")
        if self.log_every < 1:
            raise ValueError("log_every must be positive")
        if not 0.0 <= self.max_background <= 1.0:
            raise ValueError(f"max_background must be in [0, 1], got {self.max_background}")
        self.constant_prior()   # validates prior_p

    def constant_prior(self) -> float | None:
        """The constant P before the first fit, or None when the mixture is fitted before
        step 0 (``prior_p == "fit"``)."""
        if self.prior_p == "fit":
            return None
        try:
            value = float(self.prior_p)
        except ValueError:
            raise ValueError(f"prior_p must be 'fit' or a number in [0, 1], got "
                             f"{self.prior_p!r}") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"prior_p must be in [0, 1], got {value}")
        return value

    def peak_lr(self, world_size: int = 1, method_base_lr: float = 0.3) -> float:
        """``lr``, or the linear scaling rule ``base_lr x global batch / 256`` (``base_lr`` 0:
        the method's own, ``method_base_lr``)."""
        return self.lr or (self.base_lr or method_base_lr) * self.batch_size * world_size / 256

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """From ``to_dict`` output; unknown keys (a newer version's) are an error, missing ones
        take today's defaults."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


# --- command line ----------------------------------------------------------------------------

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, *, skip=(), defaults=None) -> None:
    """One flag per field (``batch_size`` -> ``--batch-size``), typed and defaulted from the
    dataclass; ``defaults`` overrides some defaults (e.g. a benchmark's smaller batch)."""
    defaults = defaults or {}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        default = defaults.get(f.name, f.default)
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if f.type in ("bool", bool):
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(f.type if isinstance(f.type, str) else
                                                f.type.__name__, str)
        parser.add_argument(_flag(f.name), type=kind, default=default, help=help_text,
                            choices=f.metadata.get("choices"), dest=f.name)


def from_args(args: argparse.Namespace, **overrides) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    values.update(overrides)
    return TrainConfig(**values)
