"""The training loop: one readable loop (nanoGPT's shape) shared by every method.

    setup -> (resume | the method's start) -> for each step: a batch from the loader, the
    method's sub-batches forward/backward, one LARS step per optimised module -> at each epoch's
    end: the method's epoch hook, validation, checkpoints.

What differs between methods (model, loader mode and augmentation, loss, label refits, the
validation figure) is in ``train.methods``; see ``methods.base.Method``. Epochs are the
loader's: exactly once over the training split per epoch, padding slots of the last batch
masked out of the loss. A checkpoint taken mid-epoch holds the loader's position, so
``resume=True`` continues with the next unseen batch and reproduces the uninterrupted run's
losses (same seed, same worker count; on the CPU bit for bit).
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from loaders import make_loader
from shards import publish
from train import checkpoint as ckpt
from train import distributed, lars
from train.config import TrainConfig
from train.methods import make_method


# --- pieces ------------------------------------------------------------------------------------

class MetricsLog:
    """``RUN/metrics.jsonl``: one JSON object per line, flushed per row (rank 0 writes)."""

    def __init__(self, path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled

    def truncate_after(self, step: int, epoch: int = 0) -> None:
        """On resume: drop rows written after the checkpoint (they will be redone): later
        steps, and the end-of-epoch rows of its own step when it was taken before that epoch's
        end was handled (those rows carry the next epoch's number)."""
        if not self.enabled or not self.path.exists():
            return

        def kept(row: dict) -> bool:
            at = row.get("step", 0)
            return at < step or (at == step and (row.get("kind") == "train" or
                                                 row.get("epoch", 0) <= epoch))

        rows = [line for line in self.path.read_text().splitlines()
                if line.strip() and kept(json.loads(line))]
        publish.write_text(self.path, "".join(r + "\n" for r in rows))

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def read_metrics(run_dir, kind: str | None = None) -> list[dict]:
    """Rows of ``RUN/metrics.jsonl`` (of one ``kind`` when given)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def precision_context(config: TrainConfig, device: torch.device):
    """A factory of autocast contexts: bf16 on CUDA under ``precision`` auto/bf16."""
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and
                                              device.type == "cuda")
    if not use_bf16:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def open_loader(config: TrainConfig, info: distributed.DistInfo, split: str, *, mode: str,
                augment, world: bool = True):
    """A loader of ``split`` in ``mode``; ``world=False`` reads the whole split on this rank."""
    device = info.device if info.device.type == "cuda" else None
    rank, size = (info.rank, info.world_size) if world else (0, 1)
    return make_loader(config.shards, mode=mode, backend=config.backend,
                       batch_size=config.batch_size, augment=augment, rank=rank,
                       world_size=size, workers=config.workers, seed=config.seed,
                       device=device, split=split, cache_dir=config.cache_dir,
                       endpoint=config.endpoint)


def pair_loader(config: TrainConfig, info: distributed.DistInfo, split: str, *, train: bool,
                world: bool = True):
    """A pairs-mode loader: augmented for training, unaugmented for scoring."""
    from loaders import AugmentSpec

    spec = AugmentSpec(size=config.size) if train else AugmentSpec.identity(config.size)
    return open_loader(config, info, split, mode="pairs", augment=spec, world=world)


@dataclass
class Run:
    """Everything a step needs, built once by ``build``."""

    config: TrainConfig
    info: distributed.DistInfo
    method: object                  # the ``methods.base.Method`` of this run
    model: torch.nn.Module          # the method's model (unwrapped; checkpoints hold this)
    forward: torch.nn.Module        # what is called: DDP and/or compiled wrapper of ``model``
    optimizers: list
    schedulers: list
    loader: object
    steps_per_epoch: int
    total_steps: int
    autocast: object

    def make_loader(self, split: str, *, mode: str, augment, world: bool = True):
        return open_loader(self.config, self.info, split, mode=mode, augment=augment,
                           world=world)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """A batch tensor on this rank's device (channels-last on a GPU, as the model is)."""
        x = x.to(self.info.device, non_blocking=True)
        if self.info.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def build(config: TrainConfig, info: distributed.DistInfo | None = None) -> Run:
    info = info or distributed.setup(config.device)
    method = make_method(config, info)
    torch.manual_seed(config.seed)            # the networks start different, reproducibly
    model = method.make_model().to(info.device)
    if info.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if info.active:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if config.compile:
        forward = torch.compile(forward)
    loader = open_loader(config, info, config.split, mode=method.mode,
                         augment=method.train_augment())
    steps_per_epoch = len(loader)
    total = config.epochs * steps_per_epoch if config.epochs else config.max_steps
    if config.max_steps:
        total = min(total, config.max_steps)
    lr = config.peak_lr(info.world_size, method.default_base_lr)
    pairs = [lars.make_optimizer(part, config, lr, total, steps_per_epoch)
             for part in method.optimised(model)]
    return Run(config, info, method, model, forward, [o for o, _ in pairs],
               [s for _, s in pairs], loader, steps_per_epoch, total,
               precision_context(config, info.device))


def train_step(run: Run, batch: dict, step: int = 0) -> dict:
    """One optimiser step on one loader batch: the method's sub-batches forward/backward with
    gradients accumulated (each sub-batch's loss is scaled by the method so they add up to the
    step's), then one LARS step per optimised module, a scheduler step, and the method's
    ``after_update`` (``step``: the step number this update completes). Returns the loss and
    the method's figures as detached tensors."""
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    chunks, figures = run.method.prepare(run, batch)
    total, parts = 0.0, {}
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        sync = run.forward.no_sync if (run.info.active and not last and
                                       hasattr(run.forward, "no_sync")) else nullcontext
        with sync():
            loss, terms = run.method.loss(run, chunk)
            loss.backward()
        total = total + loss.detach()
        for name, value in terms.items():
            parts[name] = parts.get(name, 0.0) + value
    lr = run.optimizers[0].param_groups[0]["lr"]
    for opt, sched in zip(run.optimizers, run.schedulers):
        opt.step()
        sched.step()
    after = run.method.after_update(run, step)
    return {"lr": lr, "loss": total, **parts, **figures, **after}


def state_of(run: Run, *, step: int, epoch: int, best: dict) -> dict:
    return {"config": run.config.to_dict(), "model": run.model.state_dict(),
            "optimizers": [o.state_dict() for o in run.optimizers],
            "schedulers": [s.state_dict() for s in run.schedulers],
            **run.method.state_dict(),
            "loader": run.loader.state_dict(), "rng": ckpt.rng_state(),
            "step": step, "epoch": epoch, "best": best}


def restore(run: Run, state: dict) -> tuple[int, int, dict]:
    run.model.load_state_dict(state["model"])
    for opt, s in zip(run.optimizers, state["optimizers"]):
        opt.load_state_dict(s)
    for sched, s in zip(run.schedulers, state["schedulers"]):
        sched.load_state_dict(s)
    run.method.load_state_dict(state)
    # every rank is at the same batch of the epoch; the saved state is rank 0's
    run.loader.load_state_dict({**state["loader"], "rank": run.info.rank})
    ckpt.set_rng_state(state["rng"])
    return int(state["step"]), int(state["epoch"]), dict(state["best"])


def improved(method, figures: dict, best: dict) -> bool:
    """Whether the validation ``figures`` beat ``best`` on the method's metric."""
    value, held = figures.get(method.best_metric), best.get(method.best_metric)
    if value is None:
        return False
    if held is None:
        return True
    return value > held if method.higher_is_better else value < held


def _loggable(value):
    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu()
        return float(value) if value.ndim == 0 else value.tolist()
    return value


@dataclass
class TrainResult:
    steps: int
    epochs: int
    best: dict
    seconds: float
    last_loss: float | None
    mixtures: list = field(default_factory=list)    # Siamese: state dicts of its mixtures
    labels: object = None                           # Siamese: the pairs' labels at the end


# --- the loop ---------------------------------------------------------------------------------

def train(config: TrainConfig, *, resume: bool = False, stop_at: int = 0,
          progress: bool = True) -> TrainResult:
    """Train (or continue) the run in ``config.out``; ``stop_at``: leave after that step with a
    checkpoint, as a pre-empted job would (the schedule still spans the whole run)."""
    from tqdm import tqdm

    info = distributed.setup(config.device)
    out = Path(config.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    run = build(config, info)
    method = run.method
    log = MetricsLog(out / "metrics.jsonl", enabled=info.is_main)
    main = info.is_main
    val_loader = None
    if main and config.val_split and config.eval_every:
        try:
            val_loader = method.validation_loader(run)
        except KeyError:        # the shard set has no validation split: no best.pt
            val_loader = None

    step, epoch, best = 0, 0, {method.best_metric: None, "step": None}
    if resume:
        step, epoch, best = restore(run, ckpt.load_checkpoint(out / "last.pt"))
        log.truncate_after(step, epoch)
    else:
        if main:
            publish.write_text(out / "config.json", config.to_json() + "\n")
            log.truncate_after(-1)
        for row in method.start(run):
            log.write(row)

    def save(name: str) -> None:
        if main:
            ckpt.save_checkpoint(out / name, state_of(run, step=step, epoch=epoch, best=best))

    def end_of_epoch(finished_epoch: int) -> None:
        """The method's epoch hook, validation, the best checkpoint; the loader moves on."""
        nonlocal epoch, best
        epoch = finished_epoch + 1
        for row in method.end_of_epoch(run, step, epoch):
            log.write(row)
        if val_loader is not None and epoch % config.eval_every == 0:
            figures = method.validate(run, val_loader)
            log.write({"kind": "eval", "split": config.val_split, "step": step,
                       "epoch": epoch, **figures})
            if improved(method, figures, best):
                best = {method.best_metric: figures[method.best_metric], "step": step,
                        "epoch": epoch}
                save("best.pt")
        run.loader.set_epoch(finished_epoch + 1)
        distributed.barrier(info)

    bar = tqdm(total=run.total_steps, initial=step, disable=not (progress and main),
               desc=f"train {method.name}", unit="step", dynamic_ncols=True)
    started, last_loss, t_log, steps_at_log = time.perf_counter(), None, time.perf_counter(), step
    while step < run.total_steps and not (stop_at and step >= stop_at):
        loader = run.loader
        if loader.state_dict()["batches_done"] >= run.steps_per_epoch:
            # a checkpoint taken at an epoch's last step, before the epoch's end was handled
            end_of_epoch(loader.epoch)
        this_epoch = loader.epoch
        for batch in loader:
            result = train_step(run, batch, step + 1)
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == run.total_steps:
                now = time.perf_counter()
                last_loss = float(result["loss"])
                row = {name: _loggable(value) for name, value in result.items()
                       if name != "pairs"}
                log.write({"kind": "train", "step": step, "epoch": this_epoch, **row,
                           "steps_per_s": (step - steps_at_log) / max(now - t_log, 1e-9)})
                bar.set_postfix(loss=f"{last_loss:.4f}")
                t_log, steps_at_log = now, step
            for row in method.after_step(run, step):
                log.write(row)
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save("last.pt")
            if step >= run.total_steps or (stop_at and step >= stop_at):
                break
        if loader.epoch != this_epoch or \
                loader.state_dict()["batches_done"] >= run.steps_per_epoch:
            end_of_epoch(this_epoch)
        save("last.pt")
    bar.close()
    seconds = time.perf_counter() - started
    result = TrainResult(step, epoch, best, seconds, last_loss, **method.result())
    if main and step >= run.total_steps:
        summary = {"method": method.name, "steps": step, "epochs": epoch, "best": best,
                   "last_loss": last_loss, "train_seconds": round(seconds, 3),
                   "encoder": config.encoder, "world_size": info.world_size}
        if method.name == "siamese":
            summary["mixture"] = config.mixture
        publish.write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    method.close()
    for loader in (run.loader, val_loader):
        if loader is not None:
            loader.close()
    return result
