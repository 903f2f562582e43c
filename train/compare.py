"""``train compare``: the paper's comparison on the user's data, in one resumable command.

Every method given is pretrained on the same pair shard set with the same settings (each in its
own run folder, ``OUT/<method>``), then every encoder, and a randomly initialised one, goes
through the same linear evaluation on every downstream set given. The result is
``OUT/comparison.md``: one table per task shaped like the paper's Tables 2 to 4, with the
paper's published figures beside ours, labelled as the paper's (VinDr-Mammo at 256 px, not the
same data). ``OUT/comparison.json`` holds the same figures.

Resumable: a method whose run finished (``summary.json``) is not trained again, one with a
checkpoint continues from it, and a linear evaluation whose JSON exists for the same downstream
set is not redone; a rerun after a crash does only what is missing.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from shards import publish
from train.config import TrainConfig
from train.evaluate import BASELINE_LABELS
from train.linear_eval import TASK_CLASSES, HeadConfig
from train.report import fmt_auc, markdown_table

METHODS = ("siamese", "byol", "simclr", "random", "random-bn")
# The untrained rows: one random encoder as initialised, and with BatchNorm statistics from the
# pair set (``train.evaluate.recalibrate_batchnorm`` says why both).
RANDOM_METHODS = ("random", "random-bn")
LABELS = {"siamese": "Siamese", "byol": "BYOL", "simclr": "SimCLR",
          "random": BASELINE_LABELS["random"], "random-bn": BASELINE_LABELS["random_bn"]}
TITLES = {"abnormal": "Table 2: linear evaluation, abnormal vs normal (AUC)",
          "birads": "Table 3: linear evaluation, BI-RADS (one-vs-rest AUC)",
          "outcome": "Table 4: linear evaluation, background / benign / malignant "
                     "(one-vs-rest AUC)"}
# The paper's published linear-evaluation AUCs (VinDr-Mammo, 256 px), where we quote them.
PAPER = {"abnormal": {"siamese": 0.927, "byol": 0.908, "simclr": 0.737}}


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"--methods: unknown {unknown or text!r}; choose from "
                         f"{','.join(METHODS)}")
    return list(dict.fromkeys(methods))


def pretrain(method: str, config: TrainConfig, out: Path, *, progress: bool, log) -> Path:
    """``OUT/<method>``: trained, continued from its checkpoint, or left as it is when done."""
    from train import loop

    run_dir = out / method
    if (run_dir / "summary.json").is_file():
        log(f"{method}: finished earlier ({run_dir}), not trained again")
        return run_dir
    resume = (run_dir / "last.pt").is_file()
    log(f"{method}: {'continuing' if resume else 'training'} in {run_dir}")
    run_config = config.replace(method=method, out=str(run_dir))
    if resume:
        from train.checkpoint import load_checkpoint
        saved = TrainConfig.from_dict(load_checkpoint(run_dir / "last.pt")["config"])
        run_config = saved.replace(out=str(run_dir), shards=config.shards)
    loop.train(run_config, resume=resume, progress=progress)
    return run_dir


def evaluate(method: str, run_dir: Path, downstream: str, task: str, config: TrainConfig,
             head: HeadConfig, *, n_bootstrap: int, workers: int, log) -> dict:
    """``linear_eval_<task>.json`` of one method (computed unless it exists)."""
    from train.evaluate import recalibrate_batchnorm, write_json
    from train.linear_eval import evaluate_encoders, linear_eval_run, result_header

    path = run_dir / f"linear_eval_{task}.json"
    if path.is_file():
        earlier = json.loads(path.read_text())
        if earlier.get("shards") == os.fspath(downstream):    # not another set of this task
            log(f"{method} on {task}: evaluated earlier ({path})")
            return earlier
    log(f"{method} on {task}: linear evaluation on {downstream}")
    options = {"n_bootstrap": n_bootstrap, "workers": workers, "size": config.size}
    if method not in RANDOM_METHODS:
        return linear_eval_run(run_dir, downstream, task, config=head, baseline=False,
                               **options)
    encoder = random_encoder(config.encoder, config.seed)
    statistics = {}
    if method == "random-bn":
        used = recalibrate_batchnorm(encoder, config.shards, size=config.size,
                                     endpoint=config.endpoint)
        statistics = {"batchnorm_statistics": {"shards": config.shards, "split": "train",
                                               "patches": used}}
    trained = evaluate_encoders(encoder, downstream, task, config=head, **options)
    result = {**result_header(task, downstream, head), "run": None, "checkpoint": None,
              "encoder": config.encoder, **statistics, "counts": trained.pop("counts"),
              "trained": trained}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, result)
    return result


def random_encoder(name: str, seed: int = 0):
    """One freshly initialised encoder (the random row: one encoder, as SimCLR and BYOL have;
    a Siamese run's own linear evaluation compares it with two random encoders instead)."""
    import torch

    from train.encoders import make_encoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_encoder(name).eval()


def compare(pairs: str, downstream: list[str], out, config: TrainConfig, *,
            methods=METHODS, head: HeadConfig = HeadConfig(), n_bootstrap: int = 1000,
            workers: int = 0, progress: bool = True, log=print) -> dict:
    """Pretrain ``methods`` on ``pairs``, evaluate each on every ``downstream`` set, write
    ``OUT/comparison.md`` and ``.json``; returns the figures."""
    from train.linear_eval import task_of

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for d in downstream:         # every set is checked before hours of training
        task = task_of(d, endpoint=config.endpoint)
        if task not in TASK_CLASSES:
            raise ValueError(f"{d}: not a downstream set (its manifest names no task; build it "
                             f"with `ingest build-downstream --task ...`)")
        if task in tasks:
            raise ValueError(f"{d} and {tasks[task]} are both {task} sets: give one per task")
        tasks[task] = d
    config = config.replace(shards=pairs)
    runs = {m: (out / m if m in RANDOM_METHODS else
                pretrain(m, config, out, progress=progress, log=log)) for m in methods}
    results = {task: {m: evaluate(m, runs[m], d, task, config, head, n_bootstrap=n_bootstrap,
                                  workers=workers, log=log)
                      for m in methods}
               for task, d in tasks.items()}
    figures = {task: {m: headline(task, r) for m, r in per.items()}
               for task, per in results.items()}
    publish.write_text(out / "comparison.json", json.dumps(
        {"pairs": pairs, "downstream": tasks, "methods": list(methods),
         "config": config.to_dict(), "figures": figures}, indent=1) + "\n")
    publish.write_text(out / "comparison.md", render(results, config, pairs))
    return figures


def headline(task: str, result: dict, split: str = "test") -> dict | None:
    """The reported figure of one evaluation: the binary AUC (two classes) or the mean
    one-vs-rest AUC, with its interval, and each class's one-vs-rest AUC."""
    res = (result.get("trained") or {}).get("splits", {}).get(split)
    if res is None:
        return None
    main = res["binary"] if len(TASK_CLASSES[task]) == 2 else res["ovr"]["mean"]
    return {"auc": main, "ovr": res["ovr"]}


def render(results: dict, config: TrainConfig, pairs: str) -> str:
    lines = ["# Comparison: linear evaluation of each pretrained encoder", "",
             f"Pretrained on `{pairs}`: encoder {config.encoder}, {config.size} px, batch "
             f"{config.batch_size}, epochs {config.epochs}, max steps {config.max_steps or '-'}, "
             f"seed {config.seed}. Linear head on each set's train split, AUCs on test with "
             "95% patient-bootstrap intervals (n = patches, pos = patches of class 1). The "
             "paper's figures are as published (VinDr-Mammo, 256 px patches): a reference "
             "point, not the same data.", ""]
    for task, per in results.items():
        classes = TASK_CLASSES[task]
        binary = len(classes) == 2
        header = ["method"] + (["AUC (ours)"] if binary else classes + ["mean (ours)"]) + \
                 ["paper (VinDr-256)"]
        rows = []
        for method, result in per.items():
            h = headline(task, result)
            paper = PAPER.get(task, {}).get(method)
            paper_text = f"{paper:.3f}" if paper is not None else "-"
            if h is None:
                rows.append([LABELS[method]] + ["n/a"] * (len(header) - 2) + [paper_text])
            elif binary:
                rows.append([LABELS[method], fmt_auc(h["auc"]), paper_text])
            else:
                rows.append([LABELS[method]] + [fmt_auc(h["ovr"].get(c), counts=False)
                                                for c in classes]
                            + [fmt_auc(h["auc"], counts=False), paper_text])
        lines += [f"## {TITLES[task]}", ""] + markdown_table(header, rows)
        order = sorted((m for m in per if headline(task, per[m]) and
                        headline(task, per[m])["auc"]["auc"] is not None),
                       key=lambda m: -headline(task, per[m])["auc"]["auc"])
        lines += ["", "Ordering on this data: " + " > ".join(LABELS[m] for m in order) + ".",
                  ""]
        if task not in PAPER:
            lines += ["The paper's figures for this table are not quoted here.", ""]
    return "\n".join(lines)
