"""``RUN/report.md``: the run's results in tables shaped like the paper's, the paper's beside.

Sources, all in the run folder: ``config.json``, ``metrics.jsonl`` (mixture refits and their
cost), ``evaluation.json`` (pair AUC, ``train evaluate``; computed here when missing) and
``linear_eval_<task>.json`` (``train linear-eval``). Every AUC is printed with its 95% bootstrap
interval and the counts it rests on. The paper's figures are quoted as published (VinDr-Mammo,
256 px patches), labelled as the paper's: they are a reference point, not the same data.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from train.evaluate import BASELINE_LABELS
from train.linear_eval import TASK_CLASSES

# The paper's published figures (VinDr-256): pair AUC (Table 1) and linear evaluation abnormal
# vs normal (Table 2).
PAPER_PAIR_AUC = {"val": 0.722, "test": 0.728}
PAPER_LINEAR_ABNORMAL = {"Siamese": 0.927, "BYOL": 0.908, "SimCLR": 0.737}
METHOD_LABELS = {"siamese": "Siamese", "simclr": "SimCLR", "byol": "BYOL"}
TASK_TITLES = {"abnormal": "Table 2: linear evaluation, abnormal vs normal",
               "birads": "Table 3: linear evaluation, BI-RADS (one-vs-rest)",
               "outcome": "Table 4: linear evaluation, background / benign / malignant "
                          "(one-vs-rest)"}
FIGURES = (("d_histograms.png", "Distance D per network with the fitted mixture (Figure 4a)"),
           ("tsne_test.png", "t-SNE of concat(e1, e2), test pairs, by abnormal area (Figures 5-6)"),
           ("umap_test.png", "UMAP of concat(e1, e2), test pairs, by abnormal area"),
           ("training_curves.png", "Training loss, learning rate, validation pair AUC"))


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def fmt_auc(r: dict | None, counts: bool = True) -> str:
    """``0.731 [0.702, 0.760]`` plus ``n=151, pos=23`` (and ``cutoffs 87/100``) from a dict."""
    if not r or r.get("auc") is None or (isinstance(r["auc"], float) and math.isnan(r["auc"])):
        text = "n/a"
    else:
        lo, hi = r.get("ci_low"), r.get("ci_high")
        ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
        text = f"{r['auc']:.3f}{ci}"
    if counts and r:
        text += f" (n={r['n']}, pos={r['n_positive']}"
        if r.get("cutoffs") is not None:
            text += f", cutoffs {r['cutoffs_used']}/{r['cutoffs']}"
        text += ")"
    return text


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def pair_auc_section(ev: dict | None) -> list[str]:
    out = ["## Table 1: pair AUC (averaged over 100 cutoffs of the abnormal area A)", ""]
    if not ev:
        return out + ["No evaluation: run `train evaluate --run RUN`.", ""]
    splits = [s for s in ("val", "test") if s in ev["trained"]]
    rows = []
    for kind, label in (("trained", "this run"), *BASELINE_LABELS.items()):
        for split_set in (ev.get(kind),):
            if not split_set:
                continue
            rows.append([f"{label}, score 1 - q (two nets averaged)"]
                        + [fmt_auc(split_set[s]["pair_auc"]) for s in splits])
            n_nets = len(split_set[splits[0]]["d_auc"]) if splits else 0
            for k in range(n_nets):
                rows.append([f"{label}, score D of net {k + 1}"]
                            + [fmt_auc(split_set[s]["d_auc"][k]) for s in splits])
    rows.append(["paper (VinDr-256, published)"]
                + [f"{PAPER_PAIR_AUC[s]:.3f}" for s in splits])
    out += markdown_table(["model, score"] + splits, rows)
    patients = ", ".join(f"{s}: {ev['trained'][s]['patients']}" for s in splits)
    out += ["", f"Checkpoint `{ev['checkpoint']}` (step {ev['step']}, epoch {ev['epoch']}); "
            f"shards `{ev['shards']}`. Patients per split: {patients}. {ev['cutoffs']}; "
            f"intervals: {ev['ci']}. n = pairs, pos = pairs with A > 0.", ""]
    return out


def linear_section(task: str, data: dict | None, label: str = "Siamese") -> list[str]:
    out = [f"## {TASK_TITLES[task]}", ""]
    if not data:
        return out + [f"Not run: `train linear-eval --run RUN --shards SET --task {task}`.", ""]
    classes = TASK_CLASSES[task]
    split = data["report_split"]
    binary = task == "abnormal"
    header = ["model"] + (["AUC"] if binary else classes + ["mean"])
    rows = []
    for kind, name in (("trained", f"{label} (this run)"), *BASELINE_LABELS.items()):
        res = data.get(kind, {}).get("splits", {}).get(split)
        if res is None:
            continue
        if binary:
            rows.append([name, fmt_auc(res["binary"])])
        else:
            rows.append([name] + [fmt_auc(res["ovr"].get(c), counts=False) for c in classes]
                        + [fmt_auc(res["ovr"]["mean"], counts=False)])
    if binary:
        rows += [[f"{name} (paper, VinDr-256, published)", f"{auc:.3f}"]
                 for name, auc in PAPER_LINEAR_ABNORMAL.items()]
    out += markdown_table(header, rows)
    counts = data.get("counts", {})
    out += ["", f"Head trained on `{data['head_split']}`, reported on `{split}` (val: "
            f"{_val_line(data, binary)}). Patches per class "
            + "; ".join(f"{s}: {c}" for s, c in counts.items())
            + f" ({', '.join(classes)}). Head: {data['head']}. Downstream set `{data['shards']}`."
            + " Intervals: 95% patient bootstrap.", ""]
    return out


def _val_line(data: dict, binary: bool) -> str:
    parts = []
    for kind in ("trained", *BASELINE_LABELS):
        res = data.get(kind, {}).get("splits", {}).get("val")
        if res:
            r = res["binary"] if binary else res["ovr"]["mean"]
            parts.append(f"{kind} {fmt_auc(r, counts=False)}")
    return ", ".join(parts) or "n/a"


def mixture_section(rows: list[dict]) -> list[str]:
    fits = [r for r in rows if r.get("kind") == "mixture"]
    out = ["## Mixture refits", ""]
    if not fits:
        return out + ["No mixture rows in metrics.jsonl.", ""]
    table = []
    for r in fits[-4:]:
        table.append([str(r.get("epoch")), str(r.get("net")),
                      ", ".join(f"{w:.3f}" for w in r.get("weights", [])),
                      ", ".join(f"{m:.4g}" for m in r.get("means", [])),
                      f"{r.get('seconds', float('nan')):.2f}"])
    # one refit fits both networks and logs a row per network with the refit's seconds
    refits = {(r.get("step"), r.get("epoch"), r.get("when")): float(r.get("seconds") or 0)
              for r in fits}
    total = sum(refits.values())
    out += markdown_table(["epoch", "net", "priors", "means of D", "seconds"], table)
    out += ["", f"{len(refits)} fits (the initial one included), {total:.1f} s in all "
            "(scoring the training set and fitting; the last four rows shown).", ""]
    return out


def run_section(run_dir: Path, config: dict | None, summary: dict | None) -> list[str]:
    out = [f"# Training report: `{run_dir.name}`", ""]
    if config:
        keys = ("method", "shards", "encoder", "mixture", "prior_p", "batch_size", "epochs", "max_steps",
                "lr", "base_lr", "warmup_epochs", "seed", "device")
        out += ["Configuration: " + ", ".join(f"{k} `{config.get(k)}`" for k in keys
                                              if k in config) + ".", ""]
    if summary:
        out += ["Summary: " + ", ".join(f"{k} {v}" for k, v in summary.items()
                                        if not isinstance(v, (dict, list))) + ".", ""]
    return out


def render(run_dir) -> str:
    """The report's markdown from the files of ``run_dir``."""
    run_dir = Path(run_dir)
    from train.figures import read_metrics

    rows = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() \
        else []
    lines = run_section(run_dir, _read_json(run_dir / "config.json"),
                        _read_json(run_dir / "summary.json"))
    method = (_read_json(run_dir / "config.json") or {}).get("method", "siamese")
    if method == "siamese":
        lines += pair_auc_section(_read_json(run_dir / "evaluation.json"))
    for task in TASK_CLASSES:
        lines += linear_section(task, _read_json(run_dir / f"linear_eval_{task}.json"),
                                METHOD_LABELS.get(method, method))
    lines += mixture_section(rows)
    figures = [(name, caption) for name, caption in FIGURES
               if (run_dir / "figures" / name).is_file()]
    if figures:
        lines += ["## Figures", ""]
        for name, caption in figures:
            lines += [f"{caption}:", "", f"![{caption}](figures/{name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dir) -> str:
    """Render and write ``RUN/report.md`` atomically; returns its path."""
    from shards.publish import write_bytes

    path = os.path.join(os.fspath(run_dir), "report.md")
    write_bytes(path, render(run_dir).encode())
    return path


def make_figures(run_dir, run, shards, objects=None, *, hist_pairs: int = 5000,
                 map_points: int = 10000, **options) -> list[str]:
    """Write ``RUN/figures/*.png``; ``objects`` = ``evaluate_run``'s, reused for the test map.

    ``run``: the ``LoadedRun``; ``options`` go to ``evaluate.score_split`` (workers,
    batch_size, device).
    """
    from train import figures
    from train.evaluate import score_split

    out_dir = Path(run_dir) / "figures"
    written = []
    common = {"cache_dir": run.config.cache_dir, "endpoint": run.config.endpoint,
              "size": run.config.size, **options}
    train_scores = score_split(run.model, shards, run.config.split, max_pairs=hist_pairs,
                               **common)
    if len(train_scores.area):
        written.append(figures.d_histograms(train_scores.d, run.mixtures,
                                            out_dir / "d_histograms.png"))
    test = (objects or {}).get("trained", {}).get("test")
    scores = test.scores if test is not None and test.scores.emb is not None else \
        score_split(run.model, shards, "test", max_pairs=map_points, keep_embeddings=True,
                    **common)
    if scores.emb is not None and len(scores.area) >= 5:
        written.append(figures.embedding_map(scores.emb, scores.area, out_dir / "tsne_test.png",
                                             method="tsne", max_points=map_points))
        if figures.umap_available():
            written.append(figures.embedding_map(scores.emb, scores.area,
                                                 out_dir / "umap_test.png", method="umap",
                                                 max_points=map_points))
    metrics_path = Path(run_dir) / "metrics.jsonl"
    if metrics_path.is_file():
        written.append(figures.training_curves(figures.read_metrics(metrics_path),
                                               out_dir / "training_curves.png"))
    return written


def build(run_dir, *, shards=None, refresh: bool = False, figures: bool = True,
          hist_pairs: int = 5000, map_points: int = 10000, which: str = "best",
          workers: int = 0, batch_size: int = 256, device: str = "cpu",
          n_bootstrap: int = 1000) -> str:
    """Evaluate when needed, draw the figures, write ``RUN/report.md``; returns its path."""
    from train.checkpoint import load_run
    from train.evaluate import evaluate_run, print_evaluation

    run_dir = Path(run_dir)
    run = load_run(run_dir, which=which)
    shards = shards or run.config.shards
    options = {"workers": workers, "batch_size": batch_size, "device": device}
    objects = None
    if run.config.method != "siamese":    # no pair scores: the curves only
        if figures and (run_dir / "metrics.jsonl").is_file():
            from train import figures as figures_mod
            figures_mod.training_curves(figures_mod.read_metrics(run_dir / "metrics.jsonl"),
                                        run_dir / "figures" / "training_curves.png")
        return write_report(run_dir)
    if refresh or not (run_dir / "evaluation.json").is_file():
        result = evaluate_run(run_dir, shards=shards, which=which, n_bootstrap=n_bootstrap,
                              **options)
        print_evaluation(result)
        objects = result["objects"]
    if figures:
        make_figures(run_dir, run, shards, objects, hist_pairs=hist_pairs,
                     map_points=map_points, **options)
    return write_report(run_dir)
