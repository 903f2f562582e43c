"""BYOL (Grill et al. 2020), the paper's second baseline: an online network (encoder, projector,
predictor) learns to predict the projection a target network gives of the other view; the
target is an exponential moving average of the online encoder and projector.

The momentum rises from ``ema_base`` (0.996) to 1 on the BYOL paper's cosine schedule
(``ssl.momentum_at``); the target is updated after every optimiser step. The loss is symmetric:
each view's prediction against the other view's target projection, ``2 - 2 cos``, summed. The
two views use different augmentation strengths (BYOL's asymmetric views), made of the
mammography augmentation's ops: ``VIEW_SPECS``. LARS at 0.2 x B/256.
"""
from __future__ import annotations

import torch
from torch import nn

from train import ssl
from train.encoders import make_encoder
from train.methods.ssl_common import SSLMethod

HIDDEN, OUT = 4096, 256     # the BYOL paper's projector and predictor


def view_specs(size):
    """BYOL's two views: the first with the full mammography augmentation, the second with
    milder photometric changes (as BYOL's second view has less blur and some solarisation,
    our ops have no blur: the asymmetry is in contrast and gamma)."""
    from loaders import AugmentSpec
    return (AugmentSpec(size=size),
            AugmentSpec(size=size, gamma=(0.9, 1 / 0.9), contrast=(0.9, 1.1)))


class BYOLModel(nn.Module):
    def __init__(self, encoder: str, hidden: int = HIDDEN, out: int = OUT):
        super().__init__()
        self.encoder = make_encoder(encoder)          # online: what linear evaluation reads
        self.projector = ssl.ProjectionHead(self.encoder.dim, hidden, out)
        self.predictor = ssl.ProjectionHead(out, hidden, out)
        self.target_encoder = ssl.make_target(self.encoder)
        self.target_projector = ssl.make_target(self.projector)

    def target_parameters(self):
        yield from self.target_encoder.parameters()
        yield from self.target_projector.parameters()

    def online(self) -> nn.Module:
        return nn.ModuleList([self.encoder, self.projector, self.predictor])

    def forward(self, view1: torch.Tensor, view2: torch.Tensor):
        """``(p1, p2, t1, t2)``: the online predictions of both views and the target's
        projections of both (no gradient), each view batch in one pass."""
        n = view1.shape[0]
        both = torch.cat([view1, view2])
        p = self.predictor(self.projector(self.encoder(both)))
        with torch.no_grad():
            t = self.target_projector(self.target_encoder(both))
        return p[:n], p[n:], t[:n], t[n:]

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        ssl.ema_update(self.target_encoder, self.encoder, tau)
        ssl.ema_update(self.target_projector, self.projector, tau)


def symmetric_loss(outputs, weight) -> torch.Tensor:
    """Mean over the real samples of ``byol_loss(p1, t2) + byol_loss(p2, t1)``."""
    return ssl.byol_symmetric_loss(*outputs, weight=weight)


class BYOLMethod(SSLMethod):
    name = "byol"
    default_base_lr = 0.2
    own_fields = ("ema_base", "head_hidden", "head_out")

    def make_model(self) -> nn.Module:
        return BYOLModel(self.config.encoder, self.config.head_hidden or HIDDEN,
                         self.config.head_out or OUT)

    def optimised(self, model):
        return [model.online()]

    def train_augment(self):
        return view_specs(self.config.size)

    def batch_loss(self, model, view1, view2, weight, info) -> torch.Tensor:
        return symmetric_loss(model(view1, view2), weight)

    def after_update(self, run, step: int) -> dict:
        """The target moves towards the online network with the momentum of the step just
        taken (``step - 1``: 0-based, so the first update uses ``ema_base``)."""
        tau = ssl.momentum_at(step - 1, run.total_steps, self.config.ema_base)
        run.model.update_target(tau)
        return {"tau": tau}


METHOD = BYOLMethod
