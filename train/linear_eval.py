"""Linear evaluation on a downstream set (the paper's Tables 2 to 4).

The protocol: the encoder is frozen and sees no augmentation, so every patch is embedded once
(eval mode, the whole patch scaled to [0, 1]) and a linear head is trained on the cached
embeddings with Adam (lr 0.01, weight decay 1e-5), batch 32, 100 epochs, cross-entropy over the
task's classes. A Siamese model has two encoders: one head per encoder, their class
probabilities averaged. The head is trained on the ``train`` split of the downstream set and the
AUCs are reported on ``test`` (the headline, as in the paper's tables) and on ``val`` beside it;
nothing is tuned on either.

Embeddings are standardised per feature with the training split's mean and standard deviation
before the head sees them (``standardize``, default on): an affine map the head could absorb, so
it changes no optimum, but it lets one Adam learning rate serve a trained encoder and a random one
whose features have very different scales.

Reported: for two-class tasks the binary AUC of P(class 1); for every task the one-vs-rest AUC of
each class and their mean; each with a patient-bootstrap 95% interval (``train.metrics``). A
randomly initialised model of the same architecture goes through the same steps, always beside.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from train import metrics
from train.evaluate import BASELINES, patient_of_key

TASK_CLASSES = {
    "abnormal": ["normal", "abnormal"],
    "birads": ["BI-RADS 1", "BI-RADS 3", "BI-RADS 4", "BI-RADS 5"],
    "outcome": ["background", "benign", "malignant"],
}
HEAD_SPLIT = "train"
REPORT_SPLITS = ("test", "val")


@dataclass(frozen=True)
class HeadConfig:
    """The linear head's training: the paper's values by default."""

    lr: float = 0.01
    weight_decay: float = 1e-5
    batch_size: int = 32
    epochs: int = 100
    standardize: bool = True
    seed: int = 0


@dataclass
class Embedded:
    """One split's embeddings per encoder ``[E, N, dim]``, labels ``[N]`` and sample keys."""

    x: np.ndarray
    y: np.ndarray
    keys: list


def encoders_of(model) -> list[nn.Module]:
    """The encoders whose embeddings are evaluated: both of a Siamese model, else the one."""
    if hasattr(model, "nets"):
        return [net.encoder for net in model.nets]
    if hasattr(model, "encoder"):
        return [model.encoder]
    return [model]


def labelled_loader(shards, split: str, *, batch_size: int = 256, workers: int = 0,
                    device=None, cache_dir=None, endpoint=None, size=None):
    """A labelled-patch loader over ``split`` without augmentation: the whole patch resized
    to ``size`` (the encoder's training input size; None: the stored size)."""
    from loaders import AugmentSpec, make_loader
    from shards.shardset import open_shard_set

    shard_set = open_shard_set(shards, split, endpoint=endpoint)
    size = int(size or shard_set.params.get("size") or 96)
    return make_loader(shard_set, mode="labelled", backend="torch", batch_size=batch_size,
                       augment=AugmentSpec.identity(size), workers=workers, seed=0,
                       device=device, split=split, cache_dir=cache_dir, endpoint=endpoint)


@torch.no_grad()
def embed(encoders: list[nn.Module], loader, device: str = "cpu") -> Embedded:
    """Every real (non-padding) sample of one epoch of ``loader`` through each encoder."""
    for enc in encoders:
        enc.eval().to(device)
    xs, ys, keys = [[] for _ in encoders], [], []
    for batch in loader:
        keep = ~batch["is_pad"].cpu().numpy()
        image = batch["image"].to(device)
        for k, enc in enumerate(encoders):
            xs[k].append(enc(image).float().cpu().numpy()[keep])
        ys.append(batch["label"].cpu().numpy()[keep])
        keys.extend(key for key, real in zip(batch["key"], keep) if real)
    if not ys:
        return Embedded(np.zeros((len(encoders), 0, 0), np.float32), np.zeros(0, np.int64), [])
    return Embedded(np.stack([np.concatenate(x) for x in xs]), np.concatenate(ys), keys)


def train_head(x: np.ndarray, y: np.ndarray, n_classes: int,
               config: HeadConfig = HeadConfig()) -> nn.Module:
    """A linear layer on cached embeddings ``x`` [N, dim] (cross-entropy, Adam, shuffled).

    Runs on one intra-op thread: the steps are far too small to share, and a thread pool that
    waits for its peers made them ten times slower on a busy machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_head(x, y, n_classes, config)
    finally:
        torch.set_num_threads(threads)


def _train_head(x, y, n_classes, config):
    gen = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(y).long()
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(config.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), config.batch_size):
            idx = order[start:start + config.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(head(xt[idx]), yt[idx]).backward()
            opt.step()
    return head.eval()


class LinearProbe:
    """One standardisation and one head per encoder; ``predict`` averages their probabilities."""

    def __init__(self, n_classes: int, config: HeadConfig = HeadConfig()):
        self.n_classes, self.config = n_classes, config
        self.heads, self.stats = [], []

    def fit(self, train: Embedded) -> "LinearProbe":
        for k in range(train.x.shape[0]):
            x = train.x[k].astype(np.float64)
            mean, std = (x.mean(0), x.std(0) + 1e-8) if self.config.standardize else (0.0, 1.0)
            self.stats.append((mean, std))
            self.heads.append(train_head((x - mean) / std, train.y, self.n_classes, self.config))
        return self

    @torch.no_grad()
    def predict(self, data: Embedded) -> np.ndarray:
        probs = []
        for k, (head, (mean, std)) in enumerate(zip(self.heads, self.stats)):
            x = torch.from_numpy(((data.x[k] - mean) / std).astype(np.float32))
            probs.append(torch.softmax(head(x), dim=1).numpy())
        return np.mean(probs, axis=0)


def task_aucs(y: np.ndarray, probs: np.ndarray, classes: list[str], keys: list, *,
              n_bootstrap: int = metrics.DEFAULT_BOOTSTRAP, seed: int = 0) -> dict:
    """``{"binary": AucResult | None, "ovr": {class: AucResult, "mean": AucResult}}``."""
    groups = [patient_of_key(k) for k in keys]
    kw = {"groups": groups, "n_bootstrap": n_bootstrap, "seed": seed}
    binary = metrics.binary_auc(y, probs[:, 1], **kw) if len(classes) == 2 else None
    ovr = metrics.one_vs_rest_auc(y, probs, classes=list(range(len(classes))), **kw)
    return {"binary": binary, "ovr": {(classes[c] if c != "mean" else c): r
                                      for c, r in ovr.items()}}


def aucs_to_dict(aucs: dict) -> dict:
    return {"binary": aucs["binary"].to_dict() if aucs["binary"] else None,
            "ovr": {c: r.to_dict() for c, r in aucs["ovr"].items()}}


def evaluate_encoders(model, shards, task: str, *, config: HeadConfig = HeadConfig(),
                      splits=REPORT_SPLITS, workers: int = 0, batch_size: int = 256,
                      device: str = "cpu", n_bootstrap: int = metrics.DEFAULT_BOOTSTRAP,
                      cache_dir=None, endpoint=None, size=None) -> dict:
    """Embed ``train`` and ``splits`` once, fit the probe on ``train``, AUCs on each split."""
    classes = TASK_CLASSES[task]
    encoders = encoders_of(model)
    data = {}
    for split in (HEAD_SPLIT, *splits):
        loader = labelled_loader(shards, split, batch_size=batch_size, workers=workers,
                                 device=None if device == "cpu" else device,
                                 cache_dir=cache_dir, endpoint=endpoint, size=size)
        try:
            data[split] = embed(encoders, loader, device)
        finally:
            loader.close()
    train = data[HEAD_SPLIT]
    if len(train.y) == 0 or len(set(train.y.tolist())) < 2:
        raise ValueError(f"{shards}: the train split needs patches of at least two classes, "
                         f"has {np.bincount(train.y, minlength=len(classes)).tolist()}")
    probe = LinearProbe(len(classes), config).fit(train)
    out = {"counts": {s: np.bincount(d.y, minlength=len(classes)).tolist()
                      for s, d in data.items()}, "splits": {}}
    for split in splits:
        d = data[split]
        out["splits"][split] = aucs_to_dict(
            task_aucs(d.y, probe.predict(d), classes, d.keys, n_bootstrap=n_bootstrap,
                      seed=config.seed)) if len(d.y) else None
    return out


def task_of(shards, endpoint=None) -> str | None:
    """The task a downstream set was built for (its manifest's params), if it says."""
    from shards.shardset import open_shard_set

    return open_shard_set(shards, HEAD_SPLIT, endpoint=endpoint).params.get("task")


def result_header(task: str, shards, config: HeadConfig) -> dict:
    """What every ``linear_eval_<task>.json`` says of its evaluation, whatever the model."""
    import os

    return {"task": task, "shards": os.fspath(shards), "head_split": HEAD_SPLIT,
            "report_split": REPORT_SPLITS[0], "head": asdict(config),
            "classes": TASK_CLASSES[task]}


def linear_eval_run(run_dir, shards, task: str, *, config: HeadConfig = HeadConfig(),
                    which: str = "best", baseline: bool = True, write: bool = True,
                    **options) -> dict:
    """Linear evaluation of a run's encoders (and a random model's) on a downstream set.

    Writes ``RUN/linear_eval_<task>.json`` unless ``write`` is false. ``options`` go to
    ``evaluate_encoders`` (workers, batch_size, device, n_bootstrap).
    """
    import os

    from train.checkpoint import load_run
    from train.evaluate import baseline_models, write_json

    if task not in TASK_CLASSES:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_CLASSES)}")
    built_for = task_of(shards)
    if built_for is not None and built_for != task:
        raise ValueError(f"{shards}: the downstream set was built for --task {built_for}, "
                         f"not {task}")
    run = load_run(run_dir, which=which)
    result = {**result_header(task, shards, config), "run": os.fspath(run_dir),
              "checkpoint": which, "step": run.step, "encoder": run.config.encoder}
    options.setdefault("size", run.config.size)
    trained = evaluate_encoders(run.model, shards, task, config=config, **options)
    result["counts"] = trained.pop("counts")
    result["trained"] = trained
    for kind, model, record in (baseline_models(run.config) if baseline else ()):
        rand = evaluate_encoders(model, shards, task, config=config, **options)
        rand.pop("counts")
        result.update(record)
        result[kind] = rand
    if write:
        write_json(os.path.join(run_dir, f"linear_eval_{task}.json"), result)
    return result


def summary_lines(result: dict) -> list[str]:
    """One line per model and reported split: the headline AUC with interval and counts."""
    lines = []
    binary = len(result["classes"]) == 2
    for kind in ("trained", *BASELINES):
        for split, res in (result.get(kind) or {}).get("splits", {}).items():
            if res is None:
                continue
            r = res["binary"] if binary else res["ovr"]["mean"]
            what = "AUC" if binary else "mean one-vs-rest AUC"
            ci = "" if r["ci_low"] is None else f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            auc = "nan" if r["auc"] is None else f"{r['auc']:.3f}"
            lines.append(f"{result['task']} {kind:<9} {split:<4} {what} {auc}{ci} "
                         f"(n={r['n']}, pos={r['n_positive']})")
    return lines
