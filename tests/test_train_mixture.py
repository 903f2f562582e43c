"""Mixtures on D: the posterior of the high-mean component, whatever the component order."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from train.mixture import Mixture, fit_mixture, from_state
from train_data import one_torch_thread  # noqa: F401 (fixture)


def _distances(seed=0, n_low=400, n_high=100):
    rng = np.random.default_rng(seed)
    return np.abs(np.concatenate([rng.normal(1.0, 0.2, n_low), rng.normal(3.0, 0.4, n_high)]))


def _swapped(m: Mixture) -> Mixture:
    params = {k: (v[::-1].copy() if np.ndim(v) else v) for k, v in m.params.items()}
    return Mixture(m.kind, m.weights[::-1].copy(), params, m.n)


@pytest.mark.parametrize("kind", ["gmm", "beta"])
def test_posterior_is_the_high_components_in_either_order(kind):
    m = fit_mixture(_distances(), kind)
    s = _swapped(m)
    assert m.high != s.high
    d = np.array([0.5, 1.0, 2.0, 3.0, 3.5])
    np.testing.assert_allclose(m.posterior_high(d), s.posterior_high(d), rtol=1e-12)
    post = m.posterior_high(d)
    assert post[1] < 0.1 and post[3] > 0.9          # low distances low, high distances high
    means = [mean for _, mean, _ in m.components()]
    assert means[0] < 1.3 and 2.5 < means[1] < 3.5


def test_gmm_matches_scikit_learns_column_of_the_higher_mean():
    from sklearn.mixture import GaussianMixture

    orders = set()
    for seed in range(6):
        d = _distances(seed, 300, 300)
        ours = fit_mixture(d, "gmm", seed=seed)
        ref = GaussianMixture(2, random_state=seed, reg_covar=1e-6 * np.var(d)).fit(d[:, None])
        high = int(np.argmax(ref.means_[:, 0]))
        orders.add(high)
        x = np.linspace(0, 4, 17)
        np.testing.assert_allclose(ours.posterior_high(x), ref.predict_proba(x[:, None])[:, high],
                                   atol=1e-6)
    assert orders == {0, 1}, "scikit-learn returned one order only; the test needs both"


@pytest.mark.parametrize("kind", ["gmm", "beta"])
def test_tensor_in_tensor_out_and_state_round_trip(kind):
    m = fit_mixture(_distances(), kind)
    x = np.linspace(0.2, 3.8, 10)
    out = m.posterior_high(torch.tensor(x, dtype=torch.float32))
    assert out.dtype == torch.float32 and out.shape == (10,)
    np.testing.assert_allclose(out.numpy(), m.posterior_high(x), atol=1e-6)
    again = from_state(m.state_dict())
    np.testing.assert_allclose(again.posterior_high(x), m.posterior_high(x), rtol=1e-12)
    assert again.summary() == m.summary()


def test_beta_components_are_densities_in_the_units_of_d():
    m = fit_mixture(_distances(), "beta")
    grid = np.linspace(m.params["lo"], m.params["hi"], 4001)
    total = sum(w * np.trapezoid(pdf(grid), grid) for w, _, pdf in m.components())
    assert total == pytest.approx(1.0, abs=0.02)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="mixture"):
        fit_mixture([1.0, 2.0], "poisson")
    with pytest.raises(ValueError, match="distances"):
        fit_mixture([1.0, np.nan], "gmm")
