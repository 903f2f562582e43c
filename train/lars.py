"""LARS (You et al. 2017), which torch does not ship, and the schedule the paper trained with.

Per parameter tensor ``w`` with gradient ``g`` in an adapted group:

    g <- g + weight_decay * w
    g <- trust * ||w|| / ||g|| * g          (when both norms are positive; else unchanged)
    v <- momentum * v + g
    w <- w - lr * v

Groups with ``lars=False`` (BatchNorm parameters and every bias, as in SimCLR and the paper)
skip both the weight decay and the trust ratio: plain SGD with momentum. ``param_groups``
builds the two groups from a model.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: adapted weights (LARS, weight decay) and BatchNorm/bias parameters (neither).

    A parameter is excluded when it belongs to a BatchNorm layer or is named ``bias``."""
    excluded = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if isinstance(module, _BatchNorm) or name == "bias":
                excluded.add(id(param))
    adapted = [p for p in model.parameters() if p.requires_grad and id(p) not in excluded]
    plain = [p for p in model.parameters() if p.requires_grad and id(p) in excluded]
    return [{"params": adapted, "weight_decay": weight_decay, "lars": True},
            {"params": plain, "weight_decay": 0.0, "lars": False}]


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust: float = 1e-3, eps: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0 or trust <= 0:
            raise ValueError("LARS: lr, momentum, weight_decay must be >= 0 and trust > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust=trust, eps=eps, lars=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["lars"]:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    ratio = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust"] * w_norm / (g_norm + group["eps"]),
                                        torch.ones_like(w_norm))
                    g = g * ratio
                if group["momentum"]:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = torch.clone(g).detach()
                    else:
                        buf.mul_(group["momentum"]).add_(g)
                    g = buf
                p.add_(g, alpha=-group["lr"])
        return loss


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor per step: linear from 1/warmup to 1 over ``warmup_steps``, then a
    half cosine down to 0 at ``total_steps`` (for ``torch.optim.lr_scheduler.LambdaLR``)."""
    warmup_steps, total_steps = max(0, int(warmup_steps)), max(1, int(total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))

    return factor


def make_optimizer(model: nn.Module, config, lr: float, total_steps: int, steps_per_epoch: int):
    """One LARS optimiser and its warm-up + cosine scheduler for one network."""
    opt = LARS(param_groups(model, config.weight_decay), lr=lr, momentum=config.momentum,
               weight_decay=config.weight_decay, trust=config.trust)
    warmup = round(config.warmup_epochs * steps_per_epoch)
    warmup = min(warmup, max(0, total_steps - 1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, total_steps))
    return opt, sched
