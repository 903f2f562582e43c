"""AUCs of the paper's evaluation, each with a bootstrap confidence interval.

Three metrics:

- ``averaged_pair_auc`` (the paper's Table 1): for 100 cutoffs spread uniformly inside (0, 1)
  (``k / (cutoffs + 1)`` for k = 1..cutoffs, so neither 0 nor 1 is a cutoff), a pair is abnormal
  when its abnormal area A exceeds the cutoff; the AUC of the score (higher = more abnormal) is
  computed at every cutoff and averaged. **Rule for empty classes**: a cutoff where every pair is
  normal (no A above it) or every pair is abnormal has no AUC and is skipped; the average is over
  the cutoffs used, their count is reported (``cutoffs_used``), and the AUC is NaN when every cutoff
  was skipped.
- ``binary_auc``: the AUC of a score against 0/1 labels (Table 2).
- ``one_vs_rest_auc``: one AUC per class (class c against all others, from the probability of c)
  and their unweighted mean (Tables 3 and 4).

Confidence intervals are percentile bootstrap intervals (not DeLong): samples (pairs) are drawn
with replacement, or whole groups (patients) when ``groups`` is given, so correlated pairs of one
patient move together; the generator is seeded (``seed``, default 0), so an interval is
reproducible. A resample where the metric is undefined (one class empty) is left out of the
percentiles.

Every AUC is the Mann-Whitney statistic from average ranks (ties count one half), which equals
``sklearn.metrics.roc_auc_score``; ranks let one sort serve all 100 cutoffs, which keeps 1,000
bootstrap resamples of 10,000 pairs within a second or two.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

DEFAULT_CUTOFFS = 100
DEFAULT_BOOTSTRAP = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class AucResult:
    """An AUC, its confidence interval and the counts it rests on.

    ``n`` is the number of samples (pairs); ``n_positive`` the number of positives (for the pair
    AUC: pairs with A > 0, abnormal at some cutoff). For the pair AUC, ``cutoffs_used`` of
    ``cutoffs`` had both classes and ``n_positive_at_median_cutoff`` counts pairs with A > 0.5.
    """

    auc: float
    ci_low: float
    ci_high: float
    n: int
    n_positive: int
    ci_method: str = "bootstrap-samples"
    n_bootstrap: int = 0
    level: float = DEFAULT_LEVEL
    cutoffs_used: int | None = None
    cutoffs: int | None = None
    n_positive_at_median_cutoff: int | None = None

    @property
    def n_pairs(self) -> int:
        return self.n

    @property
    def n_abnormal(self) -> int:
        return self.n_positive

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}

    def format(self) -> str:
        """One line for logs and tables: ``0.731 [0.702, 0.760] n=151 pos=23 cutoffs 87/100``."""
        text = f"{_fmt(self.auc)} [{_fmt(self.ci_low)}, {_fmt(self.ci_high)}] " \
               f"n={self.n} pos={self.n_positive}"
        if self.cutoffs is not None:
            text += f" cutoffs {self.cutoffs_used}/{self.cutoffs}"
        return text


def _fmt(x: float) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.3f}"


def pair_cutoffs(cutoffs: int = DEFAULT_CUTOFFS) -> np.ndarray:
    """The ``cutoffs`` thresholds of A, evenly spaced strictly inside (0, 1)."""
    if cutoffs <= 0:
        raise ValueError(f"cutoffs must be positive, got {cutoffs}")
    return np.arange(1, cutoffs + 1, dtype=np.float64) / (cutoffs + 1)


def _check(name: str, *arrays: np.ndarray) -> None:
    n = len(arrays[0])
    for a in arrays:
        if a.ndim != 1 or len(a) != n:
            raise ValueError(f"{name}: arrays must be one-dimensional and of equal length, "
                             f"got shapes {[x.shape for x in arrays]}")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: non-finite values in the input")


def _cutoff_aucs(area: np.ndarray, score: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """AUC at every cutoff (NaN where a class is empty), from one ranking of the scores.

    With average ranks r of the scores, the positives' AUC is
    (sum of their ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg). The positives at a cutoff are
    the pairs with the largest A, so their rank sum is a prefix sum in descending-A order.
    """
    n = len(area)
    ranks = rankdata(score)
    order = np.argsort(-area, kind="stable")
    prefix = np.concatenate([[0.0], np.cumsum(ranks[order])])
    n_pos = n - np.searchsorted(np.sort(area), cuts, side="right")
    n_neg = n - n_pos
    valid = (n_pos > 0) & (n_neg > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (prefix[n_pos] - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where(valid, auc, np.nan)


def _mean_or_nan(values: np.ndarray) -> tuple[float, int]:
    used = int(np.sum(~np.isnan(values)))
    return (float(np.nanmean(values)) if used else float("nan")), used


def _resamples(n: int, groups, n_bootstrap: int, seed: int):
    """Yield index arrays of bootstrap resamples: samples, or whole groups when given."""
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(n_bootstrap):
            yield rng.integers(0, n, size=n)
        return
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} samples")
    _, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    for _ in range(n_bootstrap):
        chosen = rng.integers(0, len(members), size=len(members))
        yield np.concatenate([members[g] for g in chosen])


def _interval(stats: list[float], level: float) -> tuple[float, float]:
    values = np.asarray([s for s in stats if not math.isnan(s)])
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def averaged_pair_auc(area, score, cutoffs: int = DEFAULT_CUTOFFS, *, groups=None,
                      n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                      level: float = DEFAULT_LEVEL) -> AucResult:
    """The pair AUC of Table 1 averaged over ``cutoffs`` thresholds of A (see the module doc).

    ``area``: the abnormal area fraction A of each pair, in [0, 1]; ``score``: higher = more
    abnormal (1 - q, or the distance D). ``groups`` (e.g. patient ids) makes the bootstrap draw
    whole patients; ``n_bootstrap=0`` skips the interval (NaN bounds).
    """
    area = np.asarray(area, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    _check("averaged_pair_auc", area, score)
    cuts = pair_cutoffs(cutoffs)
    auc, used = _mean_or_nan(_cutoff_aucs(area, score, cuts)) if len(area) else (float("nan"), 0)
    stats = []
    if used and n_bootstrap > 0:
        for idx in _resamples(len(area), groups, n_bootstrap, seed):
            values = _cutoff_aucs(area[idx], score[idx], cuts)
            stats.append(_mean_or_nan(values)[0])
    low, high = _interval(stats, level)
    return AucResult(auc=auc, ci_low=low, ci_high=high, n=len(area),
                     n_positive=int(np.sum(area > 0)), ci_method=_method(groups),
                     n_bootstrap=n_bootstrap if stats else 0, level=level,
                     cutoffs_used=used, cutoffs=cutoffs,
                     n_positive_at_median_cutoff=int(np.sum(area > 0.5)))


def _method(groups) -> str:
    return "bootstrap-samples" if groups is None else "bootstrap-groups"


def _binary(labels: np.ndarray, score: np.ndarray) -> float:
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_auc(labels, score, *, groups=None, n_bootstrap: int = DEFAULT_BOOTSTRAP,
               seed: int = 0, level: float = DEFAULT_LEVEL) -> AucResult:
    """AUC of ``score`` (higher = positive) against 0/1 ``labels``; NaN when a class is empty."""
    labels = np.asarray(labels)
    score = np.asarray(score, dtype=np.float64)
    _check("binary_auc", labels, score)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"binary_auc: labels must be 0 or 1, got {sorted(set(labels.tolist()))}")
    labels = labels.astype(bool)
    auc = _binary(labels, score)
    stats = []
    if not math.isnan(auc) and n_bootstrap > 0:
        stats = [_binary(labels[idx], score[idx])
                 for idx in _resamples(len(labels), groups, n_bootstrap, seed)]
    low, high = _interval(stats, level)
    return AucResult(auc=auc, ci_low=low, ci_high=high, n=len(labels),
                     n_positive=int(labels.sum()), ci_method=_method(groups),
                     n_bootstrap=n_bootstrap if stats else 0, level=level)


def one_vs_rest_auc(labels, probs, classes=None, *, groups=None,
                    n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                    level: float = DEFAULT_LEVEL) -> dict:
    """One-vs-rest AUC per class and their mean: ``{class: AucResult, ..., "mean": AucResult}``.

    ``probs`` is [N, C], column j the score of ``classes[j]`` (default 0..C-1). A class absent
    from ``labels`` (or present everywhere) has a NaN AUC and is left out of the mean; the mean's
    ``n_positive`` counts the classes that entered it. The mean's interval comes from the same
    resamples as the per-class ones.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"one_vs_rest_auc: probs must be [N, C] with N = {len(labels)}, "
                         f"got {probs.shape}")
    classes = list(range(probs.shape[1])) if classes is None else list(classes)
    if len(classes) != probs.shape[1]:
        raise ValueError(f"one_vs_rest_auc: {len(classes)} classes for {probs.shape[1]} columns")
    out = {}
    for j, c in enumerate(classes):
        out[c] = binary_auc((labels == c).astype(int), probs[:, j], groups=groups,
                            n_bootstrap=n_bootstrap, seed=seed, level=level)
    aucs = np.array([out[c].auc for c in classes])
    mean, used = _mean_or_nan(aucs)
    stats = []
    if used and n_bootstrap > 0:
        onehot = labels[:, None] == np.asarray(classes)[None, :]
        for idx in _resamples(len(labels), groups, n_bootstrap, seed):
            per = np.array([_binary(onehot[idx, j], probs[idx, j]) for j in range(len(classes))])
            stats.append(_mean_or_nan(per)[0])
    low, high = _interval(stats, level)
    out["mean"] = AucResult(auc=mean, ci_low=low, ci_high=high, n=len(labels), n_positive=used,
                            ci_method=_method(groups), n_bootstrap=n_bootstrap if stats else 0,
                            level=level)
    return out
