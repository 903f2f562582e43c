"""SimCLR (Chen et al. 2020), the paper's first baseline: one encoder, a two-layer projection
head, the NT-Xent loss over two augmented views of every patch.

Each patch of every pair is its own example (the loaders' ``ssl`` mode); both views come from
the same mammography augmentation (crop, contrast, gamma, flip). Under DDP the negatives come
from every rank's batch (``ssl.nt_xent`` gathers the projections with their gradient). With
``sub_batches`` > 1 each sub-batch only sees its own negatives: gradient accumulation makes the
step's gradient an average of smaller-batch NT-Xent losses, not the large batch's (docs/train.md).
LARS at 0.3 x B/256, where B counts the patches of a step on all ranks.
"""
from __future__ import annotations

import torch
from torch import nn

from train import ssl
from train.encoders import make_encoder
from train.methods.ssl_common import SSLMethod

HIDDEN, OUT = 2048, 128     # the SimCLR paper's projection head


class SimCLRModel(nn.Module):
    def __init__(self, encoder: str, hidden: int = HIDDEN, out: int = OUT):
        super().__init__()
        self.encoder = make_encoder(encoder)
        self.projector = ssl.ProjectionHead(self.encoder.dim, hidden, out)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor):
        """The projections ``(z1, z2)`` of both views, in one pass (one BatchNorm statistic)."""
        n = view1.shape[0]
        z = self.projector(self.encoder(torch.cat([view1, view2])))
        return z[:n], z[n:]


class SimCLRMethod(SSLMethod):
    name = "simclr"
    default_base_lr = 0.3
    own_fields = ("temperature", "head_hidden", "head_out")

    def make_model(self) -> nn.Module:
        return SimCLRModel(self.config.encoder, self.config.head_hidden or HIDDEN,
                           self.config.head_out or OUT)

    def train_augment(self):
        from loaders import AugmentSpec
        return AugmentSpec(size=self.config.size)

    def batch_loss(self, model, view1, view2, weight, info) -> torch.Tensor:
        z1, z2 = model(view1, view2)
        return ssl.nt_xent(z1, z2, self.config.temperature, info=info, weight=weight)


METHOD = SimCLRMethod
