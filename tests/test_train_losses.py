"""The soft-label loss (paper eqs. 3 and 4) on hand-computed values."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from train import losses
from train.methods import siamese
from train_data import one_torch_thread  # noqa: F401 (fixture)


def _logit(q: float) -> float:
    return math.log(q / (1 - q))


# q1 = 0.8, P2 = 0.3:  L1 = -(0.7 ln 0.8 + 0.3 ln 0.2) = 0.156201 + 0.482831
L1 = 0.639032
# q2 = 0.4, P1 = 0.9:  L2 = -(0.1 ln 0.4 + 0.9 ln 0.6) = 0.091629 + 0.459746
L2 = 0.551375


def test_equations_3_and_4_by_hand():
    logit1, logit2 = torch.tensor([_logit(0.8)]), torch.tensor([_logit(0.4)])
    p1, p2 = torch.tensor([0.9]), torch.tensor([0.3])
    l1, l2 = losses.siamese_losses(logit1, logit2, p1, p2)
    assert l1.item() == pytest.approx(L1, abs=1e-5)
    assert l2.item() == pytest.approx(L2, abs=1e-5)
    assert losses.siamese_loss(logit1, logit2, p1, p2).item() == pytest.approx((L1 + L2) / 2,
                                                                               abs=1e-5)
    # the labels are cross-used: network 1 learns from P2, not from its own P1
    own = losses.soft_label_bce(logit1, p1).item()
    assert own == pytest.approx(-(0.1 * math.log(0.8) + 0.9 * math.log(0.2)), abs=1e-5)
    assert abs(own - l1.item()) > 0.5


def test_padding_is_left_out_of_the_mean():
    logit = torch.tensor([_logit(0.8), 5.0])
    p = torch.tensor([0.3, 0.99])
    l1, _ = losses.siamese_losses(logit, logit, p, p, weight=torch.tensor([1.0, 0.0]))
    assert l1.item() == pytest.approx(L1, abs=1e-5)


def test_saturated_q_gives_a_finite_loss():
    l1, l2 = losses.siamese_losses(torch.tensor([80.0]), torch.tensor([-80.0]),
                                   torch.tensor([1.0]), torch.tensor([1.0]))
    assert math.isfinite(l1.item()) and l1.item() == pytest.approx(80.0, rel=1e-4)
    assert l2.item() == pytest.approx(0.0, abs=1e-6)


def test_the_method_cross_uses_the_networks_labels():
    out1 = siamese.SiameseOutput(None, None, torch.zeros(1), torch.tensor([_logit(0.8)]))
    out2 = siamese.SiameseOutput(None, None, torch.zeros(1), torch.tensor([_logit(0.4)]))
    p = torch.tensor([[0.9], [0.3]])                     # P1, P2
    l1, l2 = siamese.loss_terms((out1, out2), p, torch.ones(1), torch.tensor(1.0))
    assert (l1.item(), l2.item()) == (pytest.approx(L1, abs=1e-5), pytest.approx(L2, abs=1e-5))


def test_pair_labels_by_key():
    labels = siamese.PairLabels(["a", "b", "c"], np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]]))
    got = labels.lookup(["c", "a", "c"])
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), [[0.3, 0.1, 0.3], [0.7, 0.9, 0.7]], rtol=1e-6)
    again = siamese.PairLabels.from_state_dict(labels.state_dict())
    np.testing.assert_array_equal(again.lookup(["b"]).numpy(), labels.lookup(["b"]).numpy())
    with pytest.raises(KeyError, match="no label"):
        labels.lookup(["d"])
