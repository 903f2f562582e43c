"""The Siamese soft-label loss (the paper's eqs. 3 and 4), as pure functions of tensors.

Network k outputs ``q_k = sigmoid(logit_k)``, the probability that the pair is normal; ``P_k`` is
the posterior of the high-distance mixture component of network k (the probability that the
pair differs, i.e. is abnormal). The labels are cross-used:

    L1 = -[(1 - P2) log q1 + P2 log(1 - q1)]        (eq. 3)
    L2 = -[(1 - P1) log q2 + P1 log(1 - q2)]        (eq. 4)

Each is a binary cross-entropy of ``q_k`` against the soft target ``1 - P_other``, computed from
the logit (``binary_cross_entropy_with_logits``) so a saturated ``q`` gives a finite loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_label_bce(logit: torch.Tensor, p_abnormal: torch.Tensor) -> torch.Tensor:
    """Per-pair ``-[(1 - P) log q + P log(1 - q)]`` with ``q = sigmoid(logit)``."""
    return F.binary_cross_entropy_with_logits(logit.float(), 1.0 - p_abnormal.float(),
                                              reduction="none")


def masked_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over the pairs with weight 1 (padding slots carry 0)."""
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def siamese_losses(logit1, logit2, p1, p2, weight=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L1, L2)`` averaged over the (unpadded) pairs; ``p1``, ``p2`` are detached labels."""
    l1 = masked_mean(soft_label_bce(logit1, p2.detach()), weight)
    l2 = masked_mean(soft_label_bce(logit2, p1.detach()), weight)
    return l1, l2


def siamese_loss(logit1, logit2, p1, p2, weight=None) -> torch.Tensor:
    """The training loss: the mean of eqs. 3 and 4."""
    l1, l2 = siamese_losses(logit1, logit2, p1, p2, weight)
    return 0.5 * (l1 + l2)
