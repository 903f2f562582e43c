"""The training loop: one readable loop (nanoGPT's shape), the Siamese method's step inside it.

    setup -> (resume | fit the initial mixtures) -> for each step: a batch from the loader,
    sub-batches forward/backward, one LARS step per network -> at each epoch's end: refit the
    mixtures, validation pair AUC, checkpoints.

Epochs are the loader's: exactly once over the training split per epoch, padding slots of the
last batch masked out of the loss. A checkpoint taken mid-epoch holds the loader's position, so
``resume=True`` continues with the next unseen batch and reproduces the uninterrupted run's
losses (same seed, same worker count; on the CPU bit for bit).

Mixture refits (``refit_epochs``, ``refit_steps``) score the training set in eval mode with an
unaugmented loader of its own (the training loader's position is untouched); every rank scores
its own part, the distances and keys are gathered from all ranks, rank 0's fit is broadcast, and
every rank derives the same label P for every pair (``siamese.PairLabels``), used until the next
refit. Before the first refit P comes from ``prior_p``: by default ("fit") the mixture is fitted
on the untrained encoders' distances before step 0. Those distances already order
pairs by how much their two sides differ (the random-encoder baseline's distance-based pair AUC
says how well), so the first labels carry the signal the method bootstraps from, at the cost of
one eval-mode pass; a constant P would teach q nothing but that constant until the first refit.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from loaders import AugmentSpec, make_loader
from shards import publish
from train import checkpoint as ckpt
from train import distributed, lars
from train import mixture as mixture_mod
from train.config import TrainConfig
from train.methods import siamese


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


def pair_loader(config: TrainConfig, info: distributed.DistInfo, split: str, *, train: bool,
                world: bool = True):
    """A pairs-mode loader: augmented for training, unaugmented (``AugmentSpec.identity``) for
    scoring; ``world=False`` reads the whole split on this rank."""
    spec = AugmentSpec(size=config.size) if train else AugmentSpec.identity(config.size)
    device = info.device if info.device.type == "cuda" else None
    rank, size = (info.rank, info.world_size) if world else (0, 1)
    return make_loader(config.shards, mode="pairs", backend=config.backend,
                       batch_size=config.batch_size, augment=spec, rank=rank, world_size=size,
                       workers=config.workers, seed=config.seed, device=device, split=split,
                       cache_dir=config.cache_dir, endpoint=config.endpoint)


@dataclass
class Run:
    """Everything a step needs, built once by ``build``."""

    config: TrainConfig
    info: distributed.DistInfo
    model: torch.nn.Module          # the SiameseModel (unwrapped; checkpoints hold this)
    forward: torch.nn.Module        # what is called: DDP and/or compiled wrapper of ``model``
    optimizers: list
    schedulers: list
    loader: object
    steps_per_epoch: int
    total_steps: int
    autocast: object
    mixtures: list = field(default_factory=list)
    labels: siamese.PairLabels | None = None    # None: the constant prior, before any fit


def build(config: TrainConfig, info: distributed.DistInfo | None = None) -> Run:
    info = info or distributed.setup(config.device)
    torch.manual_seed(config.seed)            # the two networks start different, reproducibly
    model = siamese.SiameseModel(config.encoder).to(info.device)
    if info.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    forward = model
    if info.active:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None)
    if config.compile:
        forward = torch.compile(forward)
    loader = pair_loader(config, info, config.split, train=True)
    steps_per_epoch = len(loader)
    total = config.epochs * steps_per_epoch if config.epochs else config.max_steps
    if config.max_steps:
        total = min(total, config.max_steps)
    lr = config.peak_lr(info.world_size)
    pairs = [lars.make_optimizer(net, config, lr, total, steps_per_epoch) for net in model.nets]
    return Run(config, info, model, forward, [o for o, _ in pairs], [s for _, s in pairs],
               loader, steps_per_epoch, total, precision_context(config, info.device))


def train_step(run: Run, batch: dict) -> dict:
    """One optimiser step on one loader batch: ``sub_batches`` forward/backward passes with
    gradients accumulated (each sub-batch's loss is a sum over its real pairs divided by the
    step's real pairs, so the accumulated gradient is the whole batch's), then one LARS step per
    network and a scheduler step. Returns detached loss tensors."""
    device, config = run.info.device, run.config
    left = batch["left"].to(device, non_blocking=True)
    right = batch["right"].to(device, non_blocking=True)
    if device.type == "cuda":
        left = left.contiguous(memory_format=torch.channels_last)
        right = right.contiguous(memory_format=torch.channels_last)
    real = ~batch["is_pad"]
    if config.max_background < 1.0:
        kept = siamese.kept_pairs(batch["meta"], config.max_background)
        real = real & torch.from_numpy(kept).to(real.device)
    weight = real.to(device, torch.float32)
    normaliser = weight.sum().clamp_min(1.0)
    p = batch_labels(run, batch["key"], device)
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    parts = config.sub_batches
    chunks = zip(left.chunk(parts), right.chunk(parts), weight.chunk(parts), p.chunk(parts, 1))
    totals = torch.zeros(2, device=device)
    for i, (l, r, w, pp) in enumerate(chunks):
        last = i == parts - 1
        sync = run.forward.no_sync if (run.info.active and not last and
                                       hasattr(run.forward, "no_sync")) else nullcontext
        with sync():
            with run.autocast():
                outputs = run.forward(l, r)
            l1, l2 = siamese.loss_terms(outputs, pp, w, normaliser)
            (0.5 * (l1 + l2)).backward()
        totals += torch.stack([l1.detach(), l2.detach()])
    lr = run.optimizers[0].param_groups[0]["lr"]
    for opt, sched in zip(run.optimizers, run.schedulers):
        opt.step()
        sched.step()
    return {"lr": lr, "loss": totals.mean(), "loss1": totals[0], "loss2": totals[1],
            "p_mean": (p * weight).sum(dim=1) / normaliser, "pairs": normaliser}


def batch_labels(run: Run, keys, device) -> torch.Tensor:
    """``[2, B]``: the pairs' labels from the last refit, or the constant prior before one."""
    if run.labels is not None:
        return run.labels.lookup(keys, device)
    return torch.tensor([[m.p] * len(keys) for m in run.mixtures], device=device)


def refit_mixtures(run: Run, score_loader, *, seed: int):
    """Score the training set in eval mode on every rank, gather D and keys from all ranks, fit
    one mixture per network on rank 0 (on at most ``mixture_max_pairs`` distances, a seeded
    subset), broadcast it, and label every pair. Returns ``(mixtures, labels, log rows)``."""
    config, info = run.config, run.info
    start = time.perf_counter()
    score_loader.set_epoch(0)
    scores = siamese.score_pairs(run.model, score_loader, info.device, autocast=run.autocast,
                                 keep_meta=config.max_background < 1.0)
    d = np.stack([distributed.gather_concat(scores.d[k], info) for k in range(2)])
    kept = np.ones(d.shape[1], dtype=bool)
    if config.max_background < 1.0:
        kept = distributed.gather_concat(
            siamese.kept_pairs(scores.meta, config.max_background), info).astype(bool)
    keys = [k for part in distributed.gather_objects(scores.keys, info) for k in part]
    score_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if kept.sum() < 2:     # every rank holds ``kept``: all of them stop, none waits
        raise ValueError(f"max_background {config.max_background} keeps {int(kept.sum())} "
                         f"of {len(kept)} training pairs: too few to fit the mixture")
    states = None
    if info.is_main:
        fit_on = d[:, kept]     # pairs left out of the loss are left out of the fit
        if config.mixture_max_pairs and fit_on.shape[1] > config.mixture_max_pairs:
            pick = np.random.default_rng(seed).choice(fit_on.shape[1],
                                                      config.mixture_max_pairs, replace=False)
            fit_on = fit_on[:, np.sort(pick)]
        states = [mixture_mod.fit_mixture(fit_on[k], config.mixture, seed=seed).state_dict()
                  for k in range(2)]
    states = distributed.broadcast_object(states, info)
    mixtures = [mixture_mod.Mixture.from_state_dict(s) for s in states]
    labels = siamese.PairLabels.from_scores(keys, d, mixtures)
    fit_seconds = time.perf_counter() - start
    rows = [{**m.summary(), "kind": "mixture", "mixture": m.kind, "net": k + 1,
             "score_seconds": round(score_seconds, 4), "fit_seconds": round(fit_seconds, 4),
             "seconds": round(score_seconds + fit_seconds, 4), "pairs_labelled": len(labels),
             "pairs_fitted": int(kept.sum()),
             "p_mean": float(labels.p[k].mean())}
            for k, m in enumerate(mixtures)]
    return mixtures, labels, rows


def validate(run: Run, val_loader) -> dict:
    """Validation pair AUC (rank 0, whole split): score ``1 - mean q`` (the method's output)
    and, beside it, the mean of the two networks' posteriors P (the distance-based score)."""
    from train.metrics import averaged_pair_auc   # the evaluation module's metric

    val_loader.set_epoch(0)
    scores = siamese.score_pairs(run.model, val_loader, run.info.device,
                                 max_pairs=run.config.val_max_pairs or None,
                                 autocast=run.autocast)
    q_score = 1.0 - scores.q.mean(axis=0)
    d_score = np.mean([m.posterior_high(scores.d[k]) for k, m in enumerate(run.mixtures)],
                      axis=0)
    result = averaged_pair_auc(scores.area, q_score, n_bootstrap=run.config.val_bootstrap)
    d_result = averaged_pair_auc(scores.area, d_score, n_bootstrap=0)
    return {"pair_auc": _num(result.auc), "ci_low": _num(result.ci_low),
            "ci_high": _num(result.ci_high), "pair_auc_d": _num(d_result.auc),
            "n_pairs": int(result.n), "n_positive": int(result.n_positive),
            "cutoffs_used": result.cutoffs_used}


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def state_of(run: Run, *, step: int, epoch: int, best: dict) -> dict:
    return {"config": run.config.to_dict(), "model": run.model.state_dict(),
            "optimizers": [o.state_dict() for o in run.optimizers],
            "schedulers": [s.state_dict() for s in run.schedulers],
            "mixtures": [m.state_dict() for m in run.mixtures],
            "labels": run.labels.state_dict() if run.labels is not None else None,
            "loader": run.loader.state_dict(), "rng": ckpt.rng_state(),
            "step": step, "epoch": epoch, "best": best}


def restore(run: Run, state: dict) -> tuple[int, int, dict]:
    run.model.load_state_dict(state["model"])
    for opt, s in zip(run.optimizers, state["optimizers"]):
        opt.load_state_dict(s)
    for sched, s in zip(run.schedulers, state["schedulers"]):
        sched.load_state_dict(s)
    run.mixtures = [mixture_mod.from_state(s) for s in state["mixtures"]]
    labels = state.get("labels")
    run.labels = siamese.PairLabels.from_state_dict(labels) if labels is not None else None
    # every rank is at the same batch of the epoch; the saved state is rank 0's
    run.loader.load_state_dict({**state["loader"], "rank": run.info.rank})
    ckpt.set_rng_state(state["rng"])
    return int(state["step"]), int(state["epoch"]), dict(state["best"])


@dataclass
class TrainResult:
    steps: int
    epochs: int
    best: dict
    seconds: float
    last_loss: float | None
    mixtures: list = field(default_factory=list)    # state dicts of the mixtures in use
    labels: siamese.PairLabels | None = None        # the pairs' labels in use at the end


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
    log = MetricsLog(out / "metrics.jsonl", enabled=info.is_main)
    main = info.is_main
    score_loader = pair_loader(config, info, config.split, train=False)
    val_loader = None
    if main and config.val_split and config.eval_every:
        try:
            val_loader = pair_loader(config, info, config.val_split, train=False, world=False)
        except KeyError:        # the shard set has no validation split: no best.pt
            val_loader = None

    step, epoch, best = 0, 0, {"pair_auc": None, "step": None}
    if resume:
        step, epoch, best = restore(run, ckpt.load_checkpoint(out / "last.pt"))
        log.truncate_after(step, epoch)
    else:
        if main:
            tmp = out / "config.json.tmp"
            tmp.write_text(config.to_json() + "\n")
            tmp.replace(out / "config.json")
            log.truncate_after(-1)
        constant = config.constant_prior()
        if constant is None:
            run.mixtures, run.labels, rows = refit_mixtures(run, score_loader,
                                                            seed=config.seed)
            for row in rows:
                log.write({**row, "step": 0, "epoch": 0, "when": "initial"})
        else:
            run.mixtures = [mixture_mod.constant(constant)] * 2

    def save(name: str) -> None:
        if main:
            ckpt.save_checkpoint(out / name, state_of(run, step=step, epoch=epoch, best=best))

    def refit(when: str) -> None:
        run.mixtures, run.labels, rows = refit_mixtures(run, score_loader,
                                                        seed=config.seed + step)
        for row in rows:
            log.write({**row, "step": step, "epoch": epoch, "when": when})

    def end_of_epoch(finished_epoch: int) -> None:
        """Refit, validate, keep the best; the loader moves to the next epoch."""
        nonlocal epoch, best
        epoch = finished_epoch + 1
        if config.refit_epochs and epoch % config.refit_epochs == 0 and step < run.total_steps:
            refit("epoch")
        if val_loader is not None and epoch % config.eval_every == 0:
            figures = validate(run, val_loader)
            log.write({"kind": "eval", "split": config.val_split, "step": step,
                       "epoch": epoch, **figures})
            if figures["pair_auc"] is not None and (
                    best["pair_auc"] is None or figures["pair_auc"] > best["pair_auc"]):
                best = {"pair_auc": figures["pair_auc"], "step": step, "epoch": epoch}
                save("best.pt")
        run.loader.set_epoch(finished_epoch + 1)
        distributed.barrier(info)

    bar = tqdm(total=run.total_steps, initial=step, disable=not (progress and main),
               desc="train siamese", unit="step", dynamic_ncols=True)
    started, last_loss, t_log, steps_at_log = time.perf_counter(), None, time.perf_counter(), step
    while step < run.total_steps and not (stop_at and step >= stop_at):
        loader = run.loader
        if loader.state_dict()["batches_done"] >= run.steps_per_epoch:
            # a checkpoint taken at an epoch's last step, before the epoch's end was handled
            end_of_epoch(loader.epoch)
        this_epoch = loader.epoch
        for batch in loader:
            result = train_step(run, batch)
            step += 1
            bar.update(1)
            if step % config.log_every == 0 or step == run.total_steps:
                now = time.perf_counter()
                last_loss = float(result["loss"])
                log.write({"kind": "train", "step": step, "epoch": this_epoch,
                           "loss": last_loss, "loss1": float(result["loss1"]),
                           "loss2": float(result["loss2"]), "lr": result["lr"],
                           "p_mean": [float(p) for p in result["p_mean"]],
                           "steps_per_s": (step - steps_at_log) / max(now - t_log, 1e-9)})
                bar.set_postfix(loss=f"{last_loss:.4f}")
                t_log, steps_at_log = now, step
            if config.refit_steps and step % config.refit_steps == 0:
                refit("step")
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
    result = TrainResult(step, epoch, best, seconds, last_loss,
                         [m.state_dict() for m in run.mixtures], run.labels)
    if main and step >= run.total_steps:
        summary = {"steps": step, "epochs": epoch, "best": best, "last_loss": last_loss,
                   "train_seconds": round(seconds, 3), "encoder": config.encoder,
                   "mixture": config.mixture, "world_size": info.world_size}
        tmp = out / "summary.json.tmp"
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
        tmp.replace(out / "summary.json")
    for loader in (run.loader, score_loader, val_loader):
        if loader is not None:
            loader.close()
    return result
