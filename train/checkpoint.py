"""Checkpoints (written atomically) and reading a finished run back for evaluation.

A checkpoint is one ``torch.save`` dict: ``config`` (``TrainConfig.to_dict()``), ``model``
(the method's model: the two Siamese networks, SimCLR's encoder and projector, BYOL's online and
target networks), ``optimizers``, ``schedulers``, the method's own state (the Siamese
``mixtures`` and ``labels``), ``loader``
(the training loader's ``state_dict``, mid-epoch), ``rng`` (torch, CUDA, numpy, random),
``step``, ``epoch`` (epochs completed), ``best`` (the best validation figure so far).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shards import publish
from train import mixture as mixture_mod
from train.config import TrainConfig

FORMAT = 1


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file in the same folder and a rename:
    a reader (or a crash) never sees half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with publish.atomic_open(path, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


def load_checkpoint(path) -> dict:
    """A checkpoint's dict, tensors on the CPU; FileNotFoundError names the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint there")
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class LoadedRun:
    config: TrainConfig
    model: torch.nn.Module      # the method's model, eval mode, on the CPU
    mixtures: list              # Siamese: one fitted Mixture per network (else empty)
    step: int
    epoch: int
    path: Path = None


def load_run(run_dir, which: str = "best") -> LoadedRun:
    """A run's model and mixtures from ``RUN/best.pt`` (``which="best"``; falls back to
    ``last.pt`` when the run had no validation split) or ``RUN/last.pt``."""
    from train.methods import method_class

    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    path = run_dir / f"{which}.pt"
    if which == "best" and not path.is_file() and (run_dir / "last.pt").is_file():
        path = run_dir / "last.pt"
    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    model = method_class(config.method)(config, None).make_model()
    model.load_state_dict(state["model"])
    model.eval()
    mixtures = [mixture_mod.from_state(m) for m in state.get("mixtures") or []]
    return LoadedRun(config, model, mixtures, int(state["step"]), int(state["epoch"]), path)
