"""The Siamese soft-label method: two networks whose distance mixtures label each other.

Network k embeds both patches of a pair with one encoder (e1, e2), measures
``D_k = ||e1 - e2||`` and predicts ``q_k = sigmoid(FC(concat(e1, e2)))``, the probability that
the pair is normal. A two-component mixture fitted on the D_k of the training set gives
``P_k``, the posterior of the high-distance component for a pair's D_k. Network 1 learns from
network 2's labels and vice versa (``losses.siamese_loss``), so neither chases its own
mistakes.

``P_k`` is a label per training pair, refitted from time to time on the eval-mode distances
of the whole training set (``soft_labels``). ``SiameseMethod`` is the method the shared loop
runs: before step 0 the mixtures are fitted on the untrained encoders' distances (or P is a
constant, ``prior_p``), they are refitted every ``refit_epochs`` epochs and ``refit_steps``
steps, and the validation pair AUC of ``1 - mean q`` chooses ``best.pt``.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from train import losses
from train import mixture as mixture_mod
from train.encoders import make_encoder
from train.methods.base import Method
from train.methods.soft_labels import PairLabels, kept_pairs
from train.methods import soft_labels


class SiameseOutput(NamedTuple):
    e1: torch.Tensor      # [B, dim] embedding of the left patch
    e2: torch.Tensor      # [B, dim] embedding of the right patch
    d: torch.Tensor       # [B] Euclidean distance ||e1 - e2|| (float32)
    logit: torch.Tensor   # [B] logit of q = P(normal)


class SiameseNet(nn.Module):
    def __init__(self, encoder: str):
        super().__init__()
        self.encoder = make_encoder(encoder)
        self.dim = self.encoder.dim
        self.head = nn.Linear(2 * self.dim, 1)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> SiameseOutput:
        n = left.shape[0]
        # both sides in one pass: BatchNorm normalises left and right patches with one statistic
        e = self.encoder(torch.cat([left, right]))
        e1, e2 = e[:n], e[n:]
        d = torch.linalg.vector_norm(e1.float() - e2.float(), dim=1)
        logit = self.head(torch.cat([e1, e2], dim=1)).squeeze(1)
        return SiameseOutput(e1, e2, d, logit)


class SiameseModel(nn.Module):
    """The two networks; ``forward`` returns one ``SiameseOutput`` per network."""

    def __init__(self, encoder: str):
        super().__init__()
        self.encoder_name = encoder
        self.nets = nn.ModuleList([SiameseNet(encoder), SiameseNet(encoder)])

    def forward(self, left, right) -> tuple[SiameseOutput, SiameseOutput]:
        return tuple(net(left, right) for net in self.nets)


def loss_terms(outputs, p: torch.Tensor, weight, normaliser) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L1, L2)`` summed over ``weight``ed pairs and divided by ``normaliser`` (the real pairs
    of the whole step), so sub-batches add up to the step's mean. ``p``: ``[2, B]``, the labels
    ``P_1``, ``P_2``; network 1 learns from ``P_2`` and network 2 from ``P_1`` (eqs. 3 and 4)."""
    l1 = (losses.soft_label_bce(outputs[0].logit, p[1]) * weight).sum() / normaliser
    l2 = (losses.soft_label_bce(outputs[1].logit, p[0]) * weight).sum() / normaliser
    return l1, l2


class PairScores(NamedTuple):
    d: np.ndarray               # [2, N] distance per network
    q: np.ndarray               # [2, N] P(normal) per network
    area: np.ndarray            # [N] abnormal area A of the pair
    keys: list                  # [N] sample keys
    emb: np.ndarray | None      # [2, N, 2 * dim] concat(e1, e2) per network, when asked
    meta: list | None = None    # [N] sample metadata dicts, when asked


def unwrap(model: nn.Module) -> nn.Module:
    """The SiameseModel inside a DDP or compiled wrapper."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
    return model


@torch.no_grad()
def score_pairs(model, loader, device="cpu", max_pairs=None, keep_embeddings=False,
                keep_meta=False, autocast=None) -> PairScores:
    """One eval-mode pass over ``loader`` (pairs mode): D and q of both networks per pair,
    padding slots dropped, at most ``max_pairs`` pairs. The model's train/eval mode is put
    back afterwards. ``autocast``: a context factory (bf16 on a GPU), default none."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    ds, qs, areas, keys, embs, metas = [], [], [], [], [], []
    count = 0
    try:
        for batch in loader:
            real = (~batch["is_pad"]).cpu()
            left = batch["left"].to(device, non_blocking=True)
            right = batch["right"].to(device, non_blocking=True)
            with (autocast() if autocast is not None else nullcontext()):
                outputs = model(left, right)
            mask = real.to(device)
            ds.append(torch.stack([o.d.float()[mask] for o in outputs]).cpu())
            qs.append(torch.stack([torch.sigmoid(o.logit.float())[mask] for o in outputs]).cpu())
            areas.append(batch["area"].cpu()[real].float())
            keep = real.tolist()
            keys += [k for k, r in zip(batch["key"], keep) if r]
            if keep_meta:
                metas += [m for m, r in zip(batch["meta"], keep) if r]
            if keep_embeddings:
                embs.append(torch.stack([torch.cat([o.e1, o.e2], 1).float()[mask]
                                         for o in outputs]).cpu())
            count += int(real.sum())
            if max_pairs and count >= max_pairs:
                break
    finally:
        model.train(was_training)
    limit = min(count, max_pairs) if max_pairs else count
    cat = (lambda xs, axis: torch.cat(xs, axis).numpy() if xs else None)  # noqa: E731
    d = cat(ds, 1) if ds else np.zeros((2, 0), np.float32)
    q = cat(qs, 1) if qs else np.zeros((2, 0), np.float32)
    area = cat(areas, 0) if areas else np.zeros(0, np.float32)
    emb = cat(embs, 1) if keep_embeddings and embs else None
    return PairScores(d[:, :limit], q[:, :limit], area[:limit], keys[:limit],
                      emb[:, :limit] if emb is not None else None,
                      metas[:limit] if keep_meta else None)


class SiameseMethod(Method):
    name = "siamese"
    mode = "pairs"
    best_metric = "pair_auc"
    higher_is_better = True
    default_base_lr = 0.3
    own_fields = ("mixture", "prior_p", "refit_epochs", "refit_steps", "mixture_max_pairs",
                  "max_background")

    def __init__(self, config, info):
        super().__init__(config, info)
        self.mixtures: list = []
        self.labels: PairLabels | None = None    # None: the constant prior, before any fit
        self._score_loader = None

    def make_model(self) -> nn.Module:
        return SiameseModel(self.config.encoder)

    def optimised(self, model):
        return list(model.nets)     # one LARS per network, as the paper trained them

    def train_augment(self):
        from loaders import AugmentSpec
        return AugmentSpec(size=self.config.size)

    # --- labels ---
    def score_loader(self, run):
        """The unaugmented training split, this rank's part (the refits read it)."""
        if self._score_loader is None:
            from loaders import AugmentSpec
            self._score_loader = run.make_loader(self.config.split, mode="pairs",
                                                 augment=AugmentSpec.identity(self.config.size))
        return self._score_loader

    def refit(self, run, *, seed: int, when: str, step: int, epoch: int) -> list[dict]:
        def score() -> PairScores:   # eval mode, the unaugmented training set, this rank
            loader = self.score_loader(run)
            loader.set_epoch(0)
            return score_pairs(run.model, loader, self.info.device, autocast=run.autocast,
                               keep_meta=self.config.max_background < 1.0)

        self.mixtures, self.labels, rows = soft_labels.refit(score, self.config, self.info,
                                                             seed=seed)
        return [{**row, "step": step, "epoch": epoch, "when": when} for row in rows]

    def start(self, run) -> list[dict]:
        constant = self.config.constant_prior()
        if constant is not None:
            self.mixtures = [mixture_mod.constant(constant)] * 2
            return []
        return self.refit(run, seed=self.config.seed, when="initial", step=0, epoch=0)

    def after_step(self, run, step: int) -> list[dict]:
        if self.config.refit_steps and step % self.config.refit_steps == 0:
            return self.refit(run, seed=self.config.seed + step, when="step", step=step,
                              epoch=run.loader.epoch)
        return []

    def end_of_epoch(self, run, step: int, epoch: int) -> list[dict]:
        """``epoch``: epochs completed."""
        if self.config.refit_epochs and epoch % self.config.refit_epochs == 0 and \
                step < run.total_steps:
            return self.refit(run, seed=self.config.seed + step, when="epoch", step=step,
                              epoch=epoch)
        return []

    # --- the step ---
    def prepare(self, run, batch: dict):
        device, config = self.info.device, self.config
        left, right = run.to_device(batch["left"]), run.to_device(batch["right"])
        real = ~batch["is_pad"]
        if config.max_background < 1.0:
            kept = kept_pairs(batch["meta"], config.max_background)
            real = real & torch.from_numpy(kept).to(real.device)
        weight = real.to(device, torch.float32)
        normaliser = weight.sum().clamp_min(1.0)
        p = soft_labels.batch_labels(self.labels, self.mixtures, batch["key"], device)
        parts = config.sub_batches
        chunks = [{"left": l, "right": r, "weight": w, "p": pp, "normaliser": normaliser}
                  for l, r, w, pp in zip(left.chunk(parts), right.chunk(parts),
                                         weight.chunk(parts), p.chunk(parts, 1))]
        figures = {"p_mean": (p * weight).sum(dim=1) / normaliser, "pairs": normaliser}
        return chunks, figures

    def loss(self, run, chunk: dict):
        with run.autocast():
            outputs = run.forward(chunk["left"], chunk["right"])
        l1, l2 = loss_terms(outputs, chunk["p"], chunk["weight"], chunk["normaliser"])
        return 0.5 * (l1 + l2), {"loss1": l1.detach(), "loss2": l2.detach()}

    # --- validation ---
    def validation_loader(self, run):
        from loaders import AugmentSpec
        return run.make_loader(self.config.val_split, mode="pairs",
                               augment=AugmentSpec.identity(self.config.size), world=False)

    def validate(self, run, loader) -> dict:
        """Validation pair AUC (rank 0, whole split): score ``1 - mean q`` (the method's
        output) and, beside it, the mean of the two networks' posteriors P (distance-based)."""
        from train.metrics import averaged_pair_auc

        loader.set_epoch(0)
        scores = score_pairs(run.model, loader, self.info.device,
                             max_pairs=self.config.val_max_pairs or None, autocast=run.autocast)
        q_score = 1.0 - scores.q.mean(axis=0)
        d_score = np.mean([m.posterior_high(scores.d[k]) for k, m in enumerate(self.mixtures)],
                          axis=0)
        result = averaged_pair_auc(scores.area, q_score, n_bootstrap=self.config.val_bootstrap)
        d_result = averaged_pair_auc(scores.area, d_score, n_bootstrap=0)
        return {"pair_auc": _num(result.auc), "ci_low": _num(result.ci_low),
                "ci_high": _num(result.ci_high), "pair_auc_d": _num(d_result.auc),
                "n_pairs": int(result.n), "n_positive": int(result.n_positive),
                "cutoffs_used": result.cutoffs_used}

    # --- state ---
    def state_dict(self) -> dict:
        return {"mixtures": [m.state_dict() for m in self.mixtures],
                "labels": self.labels.state_dict() if self.labels is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.mixtures = [mixture_mod.from_state(s) for s in state["mixtures"]]
        labels = state.get("labels")
        self.labels = PairLabels.from_state_dict(labels) if labels is not None else None

    def result(self) -> dict:
        return {"mixtures": [m.state_dict() for m in self.mixtures], "labels": self.labels}

    def close(self) -> None:
        if self._score_loader is not None:
            self._score_loader.close()
            self._score_loader = None


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


METHOD = SiameseMethod
