"""The Siamese method's soft labels: each training pair's ``P`` from the networks' mixtures.

At each refit, an eval-mode pass over the unaugmented training set (``siamese.score_pairs``)
gives every pair's distance D_k; one two-component mixture per network is fitted on them and
each pair's posterior of the high-distance component is stored under its key (``PairLabels``)
until the next refit. The training step looks its pairs' labels up. D from the training forward
pass would not do: BatchNorm in train mode and the augmentation put those distances on another
scale than the one the mixture was fitted on (measured: P was 1.0 for every pair of the first
batch).

Under DDP every rank scores its own part, the distances and keys are gathered from all ranks,
rank 0's fit is broadcast, and every rank derives the same label for every pair.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from train import distributed
from train import mixture as mixture_mod


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


def refit(score, config, info, *, seed: int):
    """Score the training set on every rank (``score()``: this rank's ``PairScores``, with the
    metadata when ``max_background`` < 1), gather D and keys from all ranks, fit one mixture per
    network on rank 0 (on at most ``mixture_max_pairs`` distances, a seeded subset), broadcast
    it, and label every pair. Returns ``(mixtures, labels, log rows)``."""
    start = time.perf_counter()
    scores = score()
    d = np.stack([distributed.gather_concat(scores.d[k], info) for k in range(2)])
    kept = np.ones(d.shape[1], dtype=bool)
    if config.max_background < 1.0:
        kept = distributed.gather_concat(
            kept_pairs(scores.meta, config.max_background), info).astype(bool)
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
    labels = PairLabels.from_scores(keys, d, mixtures)
    fit_seconds = time.perf_counter() - start
    rows = [{**m.summary(), "kind": "mixture", "mixture": m.kind, "net": k + 1,
             "score_seconds": round(score_seconds, 4), "fit_seconds": round(fit_seconds, 4),
             "seconds": round(score_seconds + fit_seconds, 4), "pairs_labelled": len(labels),
             "pairs_fitted": int(kept.sum()),
             "p_mean": float(labels.p[k].mean())}
            for k, m in enumerate(mixtures)]
    return mixtures, labels, rows


def batch_labels(labels, mixtures, keys, device) -> torch.Tensor:
    """``[2, B]``: the pairs' labels from the last refit, or each mixture's constant prior
    before one."""
    if labels is not None:
        return labels.lookup(keys, device)
    return torch.tensor([[m.p] * len(keys) for m in mixtures], device=device)
