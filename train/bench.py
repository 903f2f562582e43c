"""``train bench``: does the loader keep the training step fed?

The same training step of the run's method (``--method``; Siamese: forward, backward, two LARS
steps) is timed twice in alternating rounds: fed by the real loader (decode and augmentation in
its workers, overlapping the step), and fed from a few batches already in memory (the step
alone). Their ratio is the fraction of the model's speed the data path lets through; 1.0 means
the loader costs nothing.
"""
from __future__ import annotations

import itertools
import os
import platform
import statistics
import time

import torch

from train import distributed
from train import loop
from train import mixture as mixture_mod
from train.config import TrainConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forever(loader):
    while True:
        yield from loader


def _timed(run, batches, steps: int) -> float:
    """Steps per second over ``steps`` steps taken from ``batches``."""
    _sync(run.info.device)
    start = time.perf_counter()
    for batch in itertools.islice(batches, steps):
        loop.train_step(run, batch, 1)
    _sync(run.info.device)
    return steps / (time.perf_counter() - start)


def run_bench(config: TrainConfig, *, steps: int = 10, warmup: int = 2, repeats: int = 3,
              preload: int = 4, log=print) -> dict:
    info = distributed.setup(config.device)
    run = loop.build(config.replace(epochs=max(config.epochs, 1000)), info)
    real = _forever(run.loader)
    memory_batches = [next(real) for _ in range(preload)]
    # labels: a constant P (a refit's per-pair labels cost one dict access per pair in the step)
    if hasattr(run.method, "mixtures"):
        run.method.mixtures, run.method.labels = [mixture_mod.constant(0.5)] * 2, None
    memory = itertools.cycle(memory_batches)
    _timed(run, real, warmup)
    _timed(run, memory, warmup)
    rounds = []
    for r in range(repeats):
        # alternate which goes first, so a slow spell of the machine hits both alike
        order = ("real", "memory") if r % 2 == 0 else ("memory", "real")
        figures = {name: _timed(run, real if name == "real" else memory, steps)
                   for name in order}
        figures["ratio"] = figures["real"] / figures["memory"]
        rounds.append(figures)
        log(f"round {r + 1}: real loader {figures['real']:.3f} steps/s, in memory "
            f"{figures['memory']:.3f} steps/s, ratio {figures['ratio']:.3f}")
    run.loader.close()
    device = info.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        (platform.processor() or platform.machine())
    real_sps = statistics.median(r["real"] for r in rounds)
    mem_sps = statistics.median(r["memory"] for r in rounds)
    return {"encoder": config.encoder, "size": config.size, "batch_size": config.batch_size,
            "sub_batches": config.sub_batches, "backend": config.backend,
            "workers": config.workers, "device": str(device), "device_name": name,
            "precision": "bf16" if run.autocast is not loop.nullcontext else "fp32",
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "steps": steps, "repeats": repeats,
            "real_steps_per_s": real_sps, "memory_steps_per_s": mem_sps,
            "real_pairs_per_s": real_sps * config.batch_size,
            "memory_pairs_per_s": mem_sps * config.batch_size,
            "ratio": statistics.median(r["ratio"] for r in rounds), "rounds": rounds}
