"""The run's figures as PNG files (matplotlib, no display needed).

* ``d_histograms``: the distance D of each network over the training pairs with the fitted
  two-component mixture drawn over it, each component scaled by its prior (the paper's
  Figure 4a);
* ``embedding_map``: t-SNE (scikit-learn) or UMAP (``umap-learn``, optional) of the pairs'
  concatenated embeddings ``concat(e1, e2)``, one panel per network, coloured by the abnormal
  area bins {0, (0, 0.5], (0.5, 1]} (the paper's Figures 5 and 6);
* ``training_curves``: loss, learning rate and validation pair AUC from ``metrics.jsonl``.

Figures are drawn on ``matplotlib.figure.Figure`` objects (no pyplot state) and written
atomically.
"""
from __future__ import annotations

import io
import json
import os

import numpy as np

A_BINS = (("A = 0", "#9e9e9e"), ("0 < A <= 0.5", "#ff9800"), ("0.5 < A <= 1", "#d32f2f"))
MAX_MAP_POINTS = 10_000
METHOD_NAMES = {"tsne": "t-SNE", "umap": "UMAP"}


def _save(fig, path) -> str:
    from shards.publish import write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_bytes(os.fspath(path), buf.getvalue())
    return os.fspath(path)


def _figure(ncols: int, width: float = 5.0, height: float = 4.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height))
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def d_histograms(d: np.ndarray, mixtures, path, *, bins: int = 60) -> str:
    """Histogram of D per network ``d`` [K, N] with each mixture component ``w * pdf``."""
    d = np.asarray(d, dtype=np.float64)
    fig, axes = _figure(len(d))
    for k, ax in enumerate(axes):
        ax.hist(d[k], bins=bins, density=True, color="#b0bec5", label=f"D (n={d.shape[1]})")
        mix = mixtures[k] if mixtures is not None and k < len(mixtures) else None
        if mix is not None and hasattr(mix, "components"):
            x = np.linspace(d[k].min(), d[k].max(), 400)
            total = np.zeros_like(x)
            for (weight, mean, pdf), colour in zip(mix.components(), ("#1976d2", "#d32f2f")):
                y = weight * pdf(x)
                total += y
                ax.plot(x, y, color=colour, label=f"prior {weight:.2f}, mean {mean:.3g}")
            ax.plot(x, total, color="black", lw=1, ls="--", label=f"{mix.kind} mixture")
        ax.set_title(f"network {k + 1}: distance D")
        ax.set_xlabel("D = ||e1 - e2||")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    return _save(fig, path)


def area_bins(area: np.ndarray) -> np.ndarray:
    """0 for A = 0, 1 for (0, 0.5], 2 for (0.5, 1]."""
    area = np.asarray(area, dtype=np.float64)
    return np.where(area <= 0, 0, np.where(area <= 0.5, 1, 2))


def project(x: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-d map of ``x`` [N, F]: PCA to 50 dimensions, then t-SNE or UMAP."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)\
        .fit_transform(x)


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def embedding_map(emb: np.ndarray, area: np.ndarray, path, *, method: str = "tsne",
                  seed: int = 0, max_points: int = MAX_MAP_POINTS) -> str:
    """``emb`` [K, N, F] (one per network), coloured by A bins; at most ``max_points`` pairs
    (a seeded subset, abnormal pairs kept first so the rare classes stay visible)."""
    emb = np.asarray(emb)
    area = np.asarray(area, dtype=np.float64)
    n = emb.shape[1]
    if n > max_points:
        rng = np.random.default_rng(seed)
        abnormal = np.flatnonzero(area > 0)
        normal = rng.permutation(np.flatnonzero(area <= 0))
        keep = np.sort(np.concatenate([abnormal[:max_points],
                                       normal[:max(0, max_points - len(abnormal))]]))
        emb, area = emb[:, keep], area[keep]
    labels = area_bins(area)
    fig, axes = _figure(len(emb))
    for k, ax in enumerate(axes):
        xy = project(emb[k], method, seed)
        for b, (name, colour) in enumerate(A_BINS):
            sel = labels == b
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4 if b == 0 else 10, c=colour,
                       alpha=0.4 if b == 0 else 0.9, label=f"{name} ({int(sel.sum())})",
                       linewidths=0)
        ax.set_title(f"network {k + 1}: {METHOD_NAMES.get(method, method)} of concat(e1, e2)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=8, markerscale=2)
    return _save(fig, path)


def read_metrics(path) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (a torn last line, from a killed run, is ignored)."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def training_curves(rows: list[dict], path) -> str:
    """Loss and learning rate per step; per evaluation the validation pair AUC (Siamese) or
    the validation loss (SimCLR, BYOL), whichever the run logged."""
    train = [r for r in rows if r.get("kind") == "train"]
    metric = "pair_auc" if any("pair_auc" in r for r in rows if r.get("kind") == "eval") \
        else "val_loss"
    evals = [r for r in rows if r.get("kind") == "eval" and r.get(metric) is not None]
    fig, axes = _figure(3, width=4.5)
    steps = [r["step"] for r in train]
    axes[0].plot(steps, [r.get("loss") for r in train], color="#1976d2", lw=1)
    for key, colour in (("loss1", "#90caf9"), ("loss2", "#ffcc80")):
        if train and key in train[0]:
            axes[0].plot(steps, [r.get(key) for r in train], color=colour, lw=0.8, label=key)
    axes[0].set_title("training loss")
    axes[1].plot(steps, [r.get("lr") for r in train], color="#388e3c")
    axes[1].set_title("learning rate")
    if evals:
        values = [r[metric] if not isinstance(r[metric], dict) else r[metric]["auc"]
                  for r in evals]
        axes[2].plot([r["step"] for r in evals], values, marker="o", color="#d32f2f")
    axes[2].set_title("validation pair AUC (1 - q)" if metric == "pair_auc" else
                      "validation loss")
    for ax in axes:
        ax.set_xlabel("step")
    return _save(fig, path)
