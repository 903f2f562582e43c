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
from train.methods.base import Method
from train.methods.ssl_common import validation_loss, view_chunks

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


class SimCLRMethod(Method):
    name = "simclr"
    mode = "ssl"
    best_metric = "val_loss"
    higher_is_better = False
    default_base_lr = 0.3
    own_fields = ("temperature", "head_hidden", "head_out")

    def make_model(self) -> nn.Module:
        return SimCLRModel(self.config.encoder, self.config.head_hidden or HIDDEN,
                           self.config.head_out or OUT)

    def train_augment(self):
        from loaders import AugmentSpec
        return AugmentSpec(size=self.config.size)

    def prepare(self, run, batch: dict):
        chunks, real = view_chunks(run, batch)
        return chunks, {"pairs": real}

    def _loss(self, forward, v1, v2, weight, info):
        z1, z2 = forward(v1, v2)
        return ssl.nt_xent(z1, z2, self.config.temperature, info=info, weight=weight)

    def loss(self, run, chunk: dict):
        info = self.info if self.info.active else None
        with run.autocast():
            loss = self._loss(run.forward, chunk["view1"], chunk["view2"], chunk["weight"], info)
        return loss * chunk["share"], {}

    def validation_loader(self, run):
        return run.make_loader(self.config.val_split, mode="ssl", augment=self.train_augment(),
                               world=False)

    def validate(self, run, loader) -> dict:
        return validation_loss(run, loader, lambda a, b, w: self._loss(run.model, a, b, w, None))


METHOD = SimCLRMethod
