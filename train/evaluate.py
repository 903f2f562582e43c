"""Pair AUC of a trained Siamese model (the paper's Table 1) on the val and test splits.

The abnormality score of a pair is ``1 - q`` averaged over the two networks (``q`` = P(normal));
the AUC of each network's distance ``D`` is reported beside it. Pairs are scored once, in eval
mode, without augmentation (the loader's identity spec: the whole patch, scaled to [0, 1]).
Confidence intervals are patient bootstraps (``train.metrics``): the abnormal pairs of a split
come from a few patients, so pairs of one patient are resampled together. The patient is the
pair's ``patient`` metadata, else the second field of the sample key
(``dataset_patient_study_view_row_col``, ``ingest/packing.py``).

A randomly initialised model of the same architecture is scored the same way, always beside:
its ``D`` AUC says how much of the separation needs no training at all.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from train import metrics

SPLITS = ("val", "test")
# The untrained baselines reported beside a run (result keys of evaluation.json and
# linear_eval_<task>.json): the paper's random model, and the same weights with BatchNorm
# statistics from the run's pair set (``recalibrate_batchnorm``).
BASELINES = ("random", "random_bn")
BASELINE_LABELS = {"random": "random init", "random_bn": "random init, BN statistics from the pairs"}


def patient_of_key(key: str) -> str:
    """The patient field of a pair key ``dataset_patient_study_view_row_col``."""
    parts = key.split("_")
    return parts[1] if len(parts) > 1 else key


def patients_of(keys, metas=None) -> list[str]:
    """The patient of each sample: its metadata's ``patient`` when given, else from the key."""
    if metas is not None:
        return [str(m.get("patient")) if m.get("patient") is not None else patient_of_key(k)
                for k, m in zip(keys, metas)]
    return [patient_of_key(k) for k in keys]


@dataclass
class PairEvaluation:
    """Pair AUCs of one model on one split: ``q`` (the averaged ``1 - q``) and ``d`` per net."""

    split: str
    q: metrics.AucResult
    d: list[metrics.AucResult]
    n_patients: int
    scores: object = field(default=None, repr=False)   # the PairScores, for figures

    def to_dict(self) -> dict:
        return {"split": self.split, "pair_auc": self.q.to_dict(),
                "d_auc": [r.to_dict() for r in self.d], "patients": self.n_patients}


def pair_loader(shards, split: str, *, batch_size: int = 256, workers: int = 0,
                device=None, cache_dir=None, endpoint=None, size=None):
    """A pairs loader over ``split`` without augmentation: the whole patch, resized to ``size``
    (the run's input size; None: the stored size)."""
    from loaders import AugmentSpec, make_loader
    from shards.shardset import open_shard_set

    shard_set = open_shard_set(shards, split, endpoint=endpoint)
    size = int(size or shard_set.params.get("size") or 96)
    return make_loader(shard_set, mode="pairs", backend="torch", batch_size=batch_size,
                       augment=AugmentSpec.identity(size), workers=workers, seed=0,
                       device=device, split=split, cache_dir=cache_dir, endpoint=endpoint)


def score_split(model, shards, split: str, *, batch_size: int = 256, workers: int = 0,
                device: str = "cpu", max_pairs=None, keep_embeddings: bool = False,
                cache_dir=None, endpoint=None, size=None):
    """``score_pairs`` of ``model`` over one split: one eval-mode pass, padding dropped."""
    from train.methods.siamese import score_pairs

    loader = pair_loader(shards, split, batch_size=batch_size, workers=workers,
                         device=None if device == "cpu" else device, cache_dir=cache_dir,
                         endpoint=endpoint, size=size)
    try:
        return score_pairs(model, loader, device=device, max_pairs=max_pairs,
                           keep_embeddings=keep_embeddings, keep_meta=True)
    finally:
        loader.close()


def pair_aucs(scores, split: str = "", *, n_bootstrap: int = metrics.DEFAULT_BOOTSTRAP,
              seed: int = 0) -> PairEvaluation:
    """Pair AUCs from ``PairScores``: ``1 - mean(q)`` and each network's ``D``."""
    groups = patients_of(scores.keys, getattr(scores, "meta", None))
    area = np.asarray(scores.area, dtype=np.float64)
    q = np.asarray(scores.q, dtype=np.float64)
    d = np.asarray(scores.d, dtype=np.float64)
    kw = {"groups": groups, "n_bootstrap": n_bootstrap, "seed": seed}
    q_auc = metrics.averaged_pair_auc(area, 1.0 - q.mean(axis=0), **kw)
    d_aucs = [metrics.averaged_pair_auc(area, d[k], **kw) for k in range(d.shape[0])]
    return PairEvaluation(split=split, q=q_auc, d=d_aucs, n_patients=len(set(groups)),
                          scores=scores)


def random_model(encoder: str, seed: int = 0):
    """A freshly initialised Siamese model of the same encoder (the untrained baseline)."""
    from train.methods.siamese import SiameseModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SiameseModel(encoder)
    return model.eval()


RECALIBRATION_PATCHES = 4096    # pair-set training patches that set a random-bn model's statistics


def recalibrate_batchnorm(model, shards, *, size=None, endpoint=None,
                          patches: int = RECALIBRATION_PATCHES) -> int:
    """Set the BatchNorm statistics of ``model``'s encoders from the first ``patches`` patches
    (both sides of each pair, unaugmented) of ``shards``' training split; weights untouched.

    The "random-bn" baseline: an untrained encoder in eval mode keeps BatchNorm's initial
    statistics (mean 0, variance 1) and so normalises nothing, which no trained encoder does;
    with the data's statistics it shows what normalisation alone changes. Returns the number
    of patches used (per encoder; 0 when the set has none or the encoders no BatchNorm)."""
    from torch.optim.swa_utils import update_bn

    from train.linear_eval import encoders_of

    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return 0                            # nothing to set: read no patches
    loader = pair_loader(shards, "train", size=size, endpoint=endpoint)
    batches, used = [], 0
    try:
        for batch in loader:
            real = ~batch["is_pad"]
            images = torch.cat([batch["left"][real], batch["right"][real]])[:patches - used]
            batches.append(images.float())
            used += len(images)
            if used >= patches:
                break
    finally:
        loader.close()
    device = next(model.parameters()).device
    for encoder in encoders_of(model):     # cumulative averages over the batches
        update_bn(batches, encoder, device=device)
    model.eval()
    return used


def baseline_models(config, device: str = "cpu"):
    """``(kind, model, record)`` for each of ``BASELINES``, from a run's ``TrainConfig``: its
    random initialisation, then the same model with BatchNorm statistics from its pair set
    (``record``: what to add to the result JSON). One model: the second follows the first."""
    model = random_model(config.encoder, config.seed).to(device)
    yield "random", model, {}
    used = recalibrate_batchnorm(model, config.shards, size=config.size, endpoint=config.endpoint)
    yield "random_bn", model, {"batchnorm_statistics": {"shards": config.shards, "split": "train",
                                                        "patches": used}}


def evaluate_model(model, shards, splits=SPLITS, *, max_pairs=None, keep_embeddings=False,
                   n_bootstrap: int = metrics.DEFAULT_BOOTSTRAP, workers: int = 0,
                   batch_size: int = 256, device: str = "cpu", cache_dir=None,
                   endpoint=None, size=None) -> dict:
    """``{split: PairEvaluation}`` of ``model`` on each split of ``shards``."""
    out = {}
    for split in splits:
        scores = score_split(model, shards, split, batch_size=batch_size, workers=workers,
                             device=device, max_pairs=max_pairs,
                             keep_embeddings=keep_embeddings, cache_dir=cache_dir,
                             endpoint=endpoint, size=size)
        out[split] = pair_aucs(scores, split, n_bootstrap=n_bootstrap)
    return out


def evaluate_run(run_dir, *, shards=None, splits=SPLITS, which: str = "best", max_pairs=None,
                 n_bootstrap: int = metrics.DEFAULT_BOOTSTRAP, workers: int = 0,
                 batch_size: int = 256, device: str = "cpu", baseline: bool = True,
                 write: bool = True) -> dict:
    """Pair AUCs of a run's ``which`` checkpoint (and of a random model) on ``splits``.

    Writes ``RUN/evaluation.json`` (atomically) unless ``write`` is false; returns its content
    plus the ``PairEvaluation`` objects under ``"objects"`` (scores kept for the figures).
    """
    from train.checkpoint import load_run

    run = load_run(run_dir, which=which)
    if run.config.method != "siamese":
        raise ValueError(f"{run_dir}: pair AUC scores the Siamese networks' q and D; a "
                         f"{run.config.method} run has neither (use train linear-eval)")
    shards = shards or run.config.shards
    common = {"max_pairs": max_pairs, "n_bootstrap": n_bootstrap, "workers": workers,
              "batch_size": batch_size, "device": device,
              "cache_dir": run.config.cache_dir, "endpoint": run.config.endpoint,
              "size": run.config.size}
    trained = evaluate_model(run.model.to(device).eval(), shards, splits,
                             keep_embeddings=True, **common)
    result = {"run": os.fspath(run_dir), "checkpoint": which, "step": run.step,
              "epoch": run.epoch, "shards": shards, "encoder": run.config.encoder,
              "score": "1 - q averaged over the two networks; D per network beside",
              "ci": "95% percentile bootstrap over patients, 1000 resamples, seed 0",
              "cutoffs": "100 cutoffs k/101 of A; a cutoff with an empty class is skipped",
              "trained": {s: e.to_dict() for s, e in trained.items()}}
    objects = {"trained": trained}
    for kind, model, record in (baseline_models(run.config, device) if baseline else ()):
        rand = evaluate_model(model, shards, splits, **common)
        result.update(record)
        result[kind] = {s: e.to_dict() for s, e in rand.items()}
        objects[kind] = rand
    if write:
        write_json(os.path.join(run_dir, "evaluation.json"), result)
    return {**result, "objects": objects}


def write_json(path, obj) -> None:
    """``obj`` as indented JSON under ``path``, never half-written."""
    from shards.publish import write_bytes

    write_bytes(os.fspath(path), (json.dumps(obj, indent=1) + "\n").encode())


def format_line(name: str, result: metrics.AucResult) -> str:
    return f"{name:<22} {result.format()}"


def print_evaluation(result: dict) -> None:
    """The pair AUCs as aligned lines: AUC [CI] pairs, abnormal pairs, cutoffs used."""
    for kind in ("trained", *BASELINES):
        for split, ev in result.get("objects", {}).get(kind, {}).items():
            print(format_line(f"{kind} {split} 1-q", ev.q))
            for k, r in enumerate(ev.d):
                print(format_line(f"{kind} {split} D net{k + 1}", r))
