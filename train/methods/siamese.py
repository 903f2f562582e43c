"""The Siamese soft-label method: two networks whose distance mixtures label each other.

Network k embeds both patches of a pair with one encoder (e1, e2), measures
``D_k = ||e1 - e2||`` and predicts ``q_k = sigmoid(FC(concat(e1, e2)))``, the probability that
the pair is normal. A two-component mixture fitted on the D_k of the training set gives
``P_k``, the posterior of the high-distance component for a pair's D_k. Network 1 learns from
network 2's labels and vice versa (``losses.siamese_loss``), so neither chases its own
mistakes.

``P_k`` is a label per training pair (``PairLabels``): at each refit, an eval-mode pass over
the unaugmented training set (``score_pairs``) gives every pair's D_k, the mixture is fitted on
them, and each pair's posterior is stored under its key until the next refit. The training step
looks its pairs' labels up. D from the training forward pass would not do: BatchNorm in train
mode and the augmentation put those distances on another scale than the one the mixture was
fitted on (measured: P was 1.0 for every pair of the first batch).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from train import losses
from train.encoders import make_encoder


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


class PairLabels:
    """``P`` of both networks for every training pair, by sample key, from one refit."""

    def __init__(self, keys, p: np.ndarray):
        self.keys = np.asarray(keys, dtype=str)
        self.p = np.asarray(p, dtype=np.float32).reshape(2, len(self.keys))
        self._index = {k: i for i, k in enumerate(self.keys.tolist())}

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys, device=None) -> torch.Tensor:
        """``[2, B]`` labels of the batch's pairs; a key the refit never saw is an error."""
        try:
            idx = [self._index[k] for k in keys]
        except KeyError as exc:
            raise KeyError(f"pair {exc.args[0]} has no label: the last refit did not score it "
                           f"(a shard set changed under the run?)") from None
        return torch.from_numpy(self.p[:, idx]).to(device)

    @classmethod
    def from_scores(cls, keys, d: np.ndarray, mixtures) -> "PairLabels":
        """Labels from each pair's distances ``d`` [2, N] under each network's mixture."""
        return cls(keys, np.stack([m.posterior_high(d[k]) for k, m in enumerate(mixtures)]))

    def state_dict(self) -> dict:
        return {"keys": self.keys, "p": self.p}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PairLabels":
        return cls(state["keys"], state["p"])


def background_of(metas) -> np.ndarray:
    """The larger background fraction of the two sides of each pair (``meta["background"]``;
    0 where the metadata has none)."""
    return np.array([max((m.get("background") or {}).values(), default=0.0) for m in metas],
                    dtype=np.float32)


def kept_pairs(metas, max_background: float) -> np.ndarray:
    """Pairs the method learns from: background at most ``max_background`` on both sides.

    Why: a pair at the breast border differs left vs right wherever the two outlines do not
    match, so its distance is large with no lesion in it; on synthetic data the high-distance
    component of the untrained encoders' mixture held such pairs, and the networks learnt to
    call the border abnormal (docs/train.md, "Where it stands")."""
    return background_of(metas) <= max_background


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
