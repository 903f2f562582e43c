"""The building blocks of the SimCLR and BYOL baselines: heads, losses and the target EMA.

SimCLR (Chen et al. 2020) trains an encoder and a projection head with NT-Xent: the two views of
a sample are positives, the other ``2N - 2`` views of the batch are negatives. BYOL (Grill et
al. 2020) trains an online encoder + projector + predictor to predict a target network's
projection of the other view; the target is an exponential moving average of the online
network, its momentum raised from ``base`` to 1 on a cosine schedule.

Distributed training: ``nt_xent`` gathers every rank's projections with gradient, so each
anchor sees the negatives of the whole global batch, as SimCLR does across TPU cores. Each
rank's loss is its own anchors' share of the global mean, so DDP's gradient average is the
gradient of the full-batch loss. BYOL needs no gathering: its loss is per sample.

Gradient accumulation does not enlarge SimCLR's set of negatives: each sub-batch is its own
NT-Xent problem, so an anchor is contrasted only with the ``2n - 2`` other views of its
sub-batch (times the world size under DDP), not with the whole accumulated batch, and the
accumulated gradient is the average of those smaller problems' gradients, not the gradient of
the large-batch loss. NT-Xent gets harder (and, per SimCLR's batch-size study, better) with
more negatives, so an accumulated run of batch ``B`` is a smaller-batch SimCLR, not batch
``B``. BYOL's loss is per sample and has no negatives: accumulation is exact for it up to
BatchNorm, whose statistics are per sub-batch for both methods.

Padding: loader batches can carry padding slots (weight 0). They are neither anchors nor
negatives in ``nt_xent`` and carry no loss in ``byol_symmetric_loss``.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from train.distributed import DistInfo, all_gather_with_grad
from train.losses import masked_mean

# SimCLR's temperature: 0.1 is the default of the reference implementation
# (google-research/simclr run.py, ``--temperature``), used for ImageNet with LARS at batch 4096;
# the paper's Table 5 shows 0.1 best among those tried for that setting. Its CIFAR-10 recipe
# uses 0.5 (appendix B.9), a smaller-batch setting.
SIMCLR_TEMPERATURE = 0.1
# BYOL's base target momentum (Grill et al. 2020, section 3.2): tau_base = 0.996.
BYOL_BASE_MOMENTUM = 0.996

_MASKED = -1e9      # a finite "minus infinity": exp() underflows to 0, gradients stay finite


# --- heads -----------------------------------------------------------------------------------

class ProjectionHead(nn.Module):
    """Linear - BatchNorm - ReLU - Linear: SimCLR's projection head and BYOL's projector and
    predictor (the BYOL paper's MLP exactly; SimCLR's reference code also batch-normalises the
    output, left out here). The first linear layer has no bias, as BatchNorm's shift makes it
    redundant. Defaults: SimCLR's head on a ResNet-18 (512 -> 2048 -> 128).

    Under DDP the BatchNorm statistics are per rank unless the caller converts the module with
    ``nn.SyncBatchNorm.convert_sync_batchnorm`` (SimCLR used global BatchNorm)."""

    def __init__(self, in_dim: int, hidden: int = 2048, out: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, out))
        self.dim = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def simclr_head(in_dim: int, hidden: int = 2048, out: int = 128) -> ProjectionHead:
    """SimCLR's projection head (the paper: 128-d output, a hidden layer as wide as ResNet-50's
    2048-d representation)."""
    return ProjectionHead(in_dim, hidden, out)


def byol_mlp(in_dim: int, hidden: int = 4096, out: int = 256) -> ProjectionHead:
    """BYOL's projector (``in_dim`` = encoder dim) or predictor (``in_dim`` = 256): the paper's
    4096-wide hidden layer and 256-d output."""
    return ProjectionHead(in_dim, hidden, out)


# --- SimCLR ----------------------------------------------------------------------------------

def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = SIMCLR_TEMPERATURE,
            info: DistInfo | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent of projections ``z1``, ``z2`` ``[n, d]`` (row i of each: the two views of sample
    i), averaged over the ``2n`` anchors; float32 math whatever the input dtype or autocast.

    Anchor ``a`` with positive ``p``: ``-log(exp(s_ap / t) / sum_{k != a} exp(s_ak / t))``, s the
    cosine similarity, k over every view of the batch but ``a`` itself.

    ``weight`` ``[n]`` (1 = sample, 0 = padding slot): padded samples are neither anchors nor
    negatives. Under DDP (``info.active``) the views of every rank are the candidates (every
    rank must pass the same ``n``; loader batches are padded to it), and the loss returned is
    ``world_size * (sum of this rank's anchor losses) / (valid anchors of all ranks)``: with
    equal valid counts, the mean over this rank's anchors; in every case the mean over ranks is
    the global batch's NT-Xent, so DDP's gradient average is the full-batch gradient."""
    n = z1.shape[0]
    if z2.shape != z1.shape:
        raise ValueError(f"z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} differ")
    if weight is None:
        weight = torch.ones(n, device=z1.device)
    weight = weight.detach().to(device=z1.device, dtype=torch.float32).reshape(n)
    world = info.world_size if info is not None and info.active else 1
    rank = info.rank if world > 1 else 0
    with torch.autocast(z1.device.type, enabled=False):
        u1 = F.normalize(z1.float(), dim=1)
        u2 = F.normalize(z2.float(), dim=1)
        if world > 1:
            u1, u2 = all_gather_with_grad(u1, info), all_gather_with_grad(u2, info)
            weight_all = all_gather_with_grad(weight, info)
        else:
            weight_all = weight
        total = world * n
        bank = torch.cat([u1, u2])                          # [2Wn]: all first views, all seconds
        bank_weight = torch.cat([weight_all, weight_all])
        own = torch.arange(n, device=z1.device) + rank * n
        anchors = torch.cat([own, own + total])             # this rank's views in the bank
        positives = torch.cat([own + total, own])
        logits = bank[anchors] @ bank.T / temperature       # [2n, 2Wn]
        not_candidate = bank_weight[None, :] == 0
        not_candidate = not_candidate | (torch.arange(2 * total, device=z1.device)[None, :]
                                         == anchors[:, None])
        logits = logits.masked_fill(not_candidate, _MASKED)
        per_anchor = F.cross_entropy(logits, positives, reduction="none")
        anchor_weight = bank_weight[anchors]
        valid = 2.0 * weight_all.sum()
        return world * (per_anchor * anchor_weight).sum() / valid.clamp_min(1.0)


# --- BYOL ------------------------------------------------------------------------------------

def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per sample ``2 - 2 cos(p, z)`` ``[n]`` (BYOL eq. 2), float32; ``z``, the target's
    projection, is detached."""
    with torch.autocast(p.device.type, enabled=False):
        return 2.0 - 2.0 * F.cosine_similarity(p.float(), z.detach().float(), dim=-1)


def byol_symmetric_loss(p1: torch.Tensor, p2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor,
                        weight: torch.Tensor | None = None) -> torch.Tensor:
    """BYOL's symmetrised loss ``L + L~``: the online prediction of view 1 (``p1``) against the
    target projection of view 2 (``z2``), plus the swap; averaged over the unpadded samples."""
    return masked_mean(byol_loss(p1, z2) + byol_loss(p2, z1), weight)


def momentum_at(step: int, total_steps: int, base: float = BYOL_BASE_MOMENTUM) -> float:
    """BYOL's target momentum ``1 - (1 - base) (cos(pi k / K) + 1) / 2`` at step ``k`` of ``K``:
    ``base`` at 0, 1 at ``K`` (steps past ``K`` stay at 1)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


def make_target(online: nn.Module) -> nn.Module:
    """A copy of ``online`` for the BYOL target: same weights, no gradients."""
    target = copy.deepcopy(online)
    for param in target.parameters():
        param.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """In place: every target parameter ``<- tau * target + (1 - tau) * online``; every buffer
    copied from the online network.

    Buffers (BatchNorm running statistics, counters) are not learned by gradient, so there is
    nothing for the average to smooth: in training mode BatchNorm normalises with the batch's
    statistics, and the running ones matter only when the target is run in eval mode; copying
    gives it the online network's, which track the same data."""
    t_params, o_params = list(target.parameters()), list(online.parameters())
    t_bufs, o_bufs = list(target.buffers()), list(online.buffers())
    if len(t_params) != len(o_params) or len(t_bufs) != len(o_bufs):
        raise ValueError("target and online networks differ in structure")
    for t, o in zip(t_params, o_params):
        t.lerp_(o.detach().to(t.dtype), 1.0 - tau)      # t + (1 - tau)(o - t)
    for t, o in zip(t_bufs, o_bufs):
        t.copy_(o)
