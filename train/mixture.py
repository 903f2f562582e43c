"""Two-component mixtures on the embedding distances D, and the soft label they give.

The paper fits a two-component Gaussian mixture (scikit-learn) to the distances D_k of network k
over the whole training set; P_k, the posterior of the component with the higher mean, is the
probability that a pair's two sides differ. scikit-learn returns its components in no fixed
order, so the high component is found by its mean, never by its index.

``kind="beta"`` is the paper's proposed future work: distances are positive and skewed, which a
Beta density on D scaled into (0, 1) follows better than a Gaussian. It is fitted by EM with a
weighted method-of-moments M-step (closed form, robust; exact maximum likelihood for a Beta has
no closed form) and evaluated with ``scipy.stats.beta``.

A fitted ``Mixture`` is plain numbers (``state_dict``), so it goes into checkpoints and is
the same on every rank once broadcast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import stats
from scipy.special import betaln, logsumexp

KINDS = ("gmm", "beta")
BETA_EPS = 1e-3          # scaled distances live in [eps, 1 - eps]: the Beta log-pdf stays finite
BETA_ITERATIONS = 200
BETA_TOL = 1e-7


@dataclass
class Mixture:
    """Two weighted components; ``params`` holds per-component arrays (gmm: ``mean``, ``var``;
    beta: ``a``, ``b``) and, for beta, the scaling ``lo``, ``hi`` of D into (0, 1)."""

    kind: str
    weights: np.ndarray
    params: dict = field(default_factory=dict)
    n: int = 0

    @property
    def high(self) -> int:
        """Index of the component with the higher mean distance."""
        return int(np.argmax(self.means))

    @property
    def means(self) -> np.ndarray:
        """Component means in the units of D."""
        if self.kind == "gmm":
            return np.asarray(self.params["mean"], dtype=np.float64)
        a, b = (np.asarray(self.params[k], dtype=np.float64) for k in ("a", "b"))
        return self._unscale(a / (a + b))

    # --- densities ----------------------------------------------------------------------------

    def _scale(self, d: np.ndarray) -> np.ndarray:
        lo, hi = self.params["lo"], self.params["hi"]
        x = (d - lo) / max(hi - lo, 1e-12)
        return BETA_EPS + (1 - 2 * BETA_EPS) * np.clip(x, 0.0, 1.0)

    def _unscale(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self.params["lo"], self.params["hi"]
        return lo + (x - BETA_EPS) / (1 - 2 * BETA_EPS) * (hi - lo)

    def _log_joint(self, d: np.ndarray) -> np.ndarray:
        """``log(weight_c) + log pdf_c(d)``, shape ``[N, 2]`` (beta: density of scaled d)."""
        logw = np.log(np.maximum(self.weights, 1e-300))
        if self.kind == "gmm":
            mean = np.asarray(self.params["mean"])
            var = np.asarray(self.params["var"])
            logpdf = stats.norm.logpdf(d[:, None], loc=mean[None, :], scale=np.sqrt(var)[None, :])
        else:
            x = self._scale(d)
            logpdf = stats.beta.logpdf(x[:, None], np.asarray(self.params["a"])[None, :],
                                       np.asarray(self.params["b"])[None, :])
        return logw[None, :] + logpdf

    def _log_joint_torch(self, d: torch.Tensor) -> torch.Tensor:
        """``_log_joint`` in torch (float64, on ``d``'s device)."""
        as_t = lambda v: torch.as_tensor(np.asarray(v, np.float64), device=d.device)  # noqa: E731
        logw = torch.log(as_t(np.maximum(self.weights, 1e-300)))
        if self.kind == "gmm":
            mean, var = as_t(self.params["mean"]), as_t(self.params["var"])
            logpdf = -0.5 * ((d[:, None] - mean) ** 2 / var + torch.log(2 * math.pi * var))
        else:
            lo, hi = self.params["lo"], self.params["hi"]
            x = ((d - lo) / max(hi - lo, 1e-12)).clamp(0.0, 1.0) * (1 - 2 * BETA_EPS) + BETA_EPS
            a, b = np.asarray(self.params["a"], float), np.asarray(self.params["b"], float)
            logpdf = ((as_t(a) - 1) * torch.log(x[:, None]) + (as_t(b) - 1) * torch.log1p(-x[:, None])
                      - as_t(betaln(a, b)))
        return logw + logpdf

    def posterior_high(self, d):
        """P(high-distance component | d) per pair; numpy in -> numpy out, tensor in -> tensor
        out (same dtype and device)."""
        if isinstance(d, torch.Tensor):   # computed where d is: no copy to the host per step
            joint = self._log_joint_torch(d.detach().reshape(-1).to(torch.float64))
            post = torch.exp(joint[:, self.high] - torch.logsumexp(joint, dim=1))
            return post.to(d.dtype).reshape(d.shape)
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        joint = self._log_joint(d)
        return np.exp(joint[:, self.high] - logsumexp(joint, axis=1))

    def components(self) -> list[tuple[float, float, object]]:
        """``(weight, mean, pdf)`` per component, ``pdf(x)`` a density in the units of D (for
        plotting over a histogram of D), ordered low mean first."""
        out = []
        for c in np.argsort(self.means):
            c = int(c)
            if self.kind == "gmm":
                mean, sd = float(self.params["mean"][c]), float(np.sqrt(self.params["var"][c]))
                pdf = (lambda x, m=mean, s=sd: stats.norm.pdf(np.asarray(x, float), m, s))
            else:
                a, b = float(self.params["a"][c]), float(self.params["b"][c])
                jac = (1 - 2 * BETA_EPS) / max(self.params["hi"] - self.params["lo"], 1e-12)
                pdf = (lambda x, a=a, b=b, j=jac:
                       stats.beta.pdf(self._scale(np.asarray(x, float)), a, b) * j)
            out.append((float(self.weights[c]), float(self.means[c]), pdf))
        return out

    def log_likelihood(self, d) -> float:
        """Mean log-likelihood per pair (beta: of the scaled distances)."""
        d = np.asarray(d, dtype=np.float64).reshape(-1)
        return float(np.mean(logsumexp(self._log_joint(d), axis=1)))

    # --- state --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"kind": self.kind, "weights": [float(w) for w in self.weights], "n": int(self.n),
                "params": {k: (np.asarray(v, float).tolist() if np.ndim(v) else float(v))
                           for k, v in self.params.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Mixture":
        params = {k: (np.asarray(v, float) if isinstance(v, list) else float(v))
                  for k, v in state["params"].items()}
        return cls(state["kind"], np.asarray(state["weights"], float), params, int(state["n"]))

    def summary(self) -> dict:
        """Weights and means ordered low mean first (for the metrics log)."""
        order = np.argsort(self.means)
        return {"kind": self.kind, "weights": [float(self.weights[i]) for i in order],
                "means": [float(self.means[i]) for i in order], "n": int(self.n)}


def fit_mixture(d, kind: str = "gmm", seed: int = 0) -> Mixture:
    """A two-component mixture fitted to distances ``d`` (1-d)."""
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if kind not in KINDS:
        raise ValueError(f"unknown mixture {kind!r}; expected one of {KINDS}")
    if len(d) < 2 or not np.all(np.isfinite(d)):
        raise ValueError(f"cannot fit a mixture to {len(d)} distances (finite, at least 2)")
    if kind == "gmm":
        return _fit_gmm(d, seed)
    return _fit_beta(d)


def _fit_gmm(d: np.ndarray, seed: int) -> Mixture:
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=seed,
                          reg_covar=1e-6 * max(float(np.var(d)), 1e-12))
    gmm.fit(d[:, None])
    return Mixture("gmm", gmm.weights_.astype(float),
                   {"mean": gmm.means_[:, 0].astype(float),
                    "var": gmm.covariances_[:, 0, 0].astype(float)}, len(d))


def _moments_to_beta(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    var = np.minimum(var, mean * (1 - mean) * 0.999)   # a Beta needs var < m(1 - m)
    common = mean * (1 - mean) / np.maximum(var, 1e-12) - 1
    return mean * common, (1 - mean) * common


def _fit_beta(d: np.ndarray) -> Mixture:
    lo, hi = float(d.min()), float(d.max())
    mix = Mixture("beta", np.array([0.5, 0.5]), {"lo": lo, "hi": hi}, len(d))
    x = mix._scale(d)
    # start: split at the median (low half, high half)
    resp = np.stack([x <= np.median(x), x > np.median(x)], axis=1).astype(float)
    if resp[:, 1].sum() == 0:       # all equal: any split will do
        resp[: len(x) // 2] = [0.0, 1.0]
    previous = -np.inf
    for _ in range(BETA_ITERATIONS):
        total = resp.sum(axis=0) + 1e-12
        mean = (resp * x[:, None]).sum(axis=0) / total
        var = (resp * (x[:, None] - mean) ** 2).sum(axis=0) / total
        a, b = _moments_to_beta(mean, np.maximum(var, 1e-8))
        mix.weights = total / total.sum()
        mix.params.update(a=a, b=b)
        joint = mix._log_joint(d)
        norm = logsumexp(joint, axis=1)
        resp = np.exp(joint - norm[:, None])
        current = float(norm.mean())
        if abs(current - previous) < BETA_TOL:
            break
        previous = current
    return mix


def constant(p: float) -> "ConstantPosterior":
    return ConstantPosterior(float(p))


@dataclass
class ConstantPosterior:
    """P before the first fit when the run asks for a constant (``prior_p`` a number)."""

    p: float
    kind: str = "constant"

    def posterior_high(self, d):
        if isinstance(d, torch.Tensor):
            return torch.full_like(d, self.p)
        return np.full(np.shape(d), self.p, dtype=np.float64)

    def components(self) -> list:
        """No components: nothing was fitted."""
        return []

    def state_dict(self) -> dict:
        return {"kind": "constant", "p": self.p}

    def summary(self) -> dict:
        return {"kind": "constant", "p": self.p}


def from_state(state: dict):
    """A ``Mixture`` or ``ConstantPosterior`` from its ``state_dict``."""
    if state["kind"] == "constant":
        return ConstantPosterior(float(state["p"]))
    return Mixture.from_state_dict(state)
