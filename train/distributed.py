"""DDP through ``torchrun``: process group from the environment, and the few collectives the
training loop needs (gathering distances for the mixture, sharing one fitted mixture, gathering
SimCLR's projections with their gradient).

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every function works on the single process,
so the loop has one code path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU where there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes (nccl on GPUs, gloo on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def gather_concat(values: np.ndarray, info: DistInfo) -> np.ndarray:
    """Every rank's 1-d ``values`` (lengths may differ), concatenated in rank order, on every
    rank (``all_gather`` of padded tensors)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not info.active:
        return values
    device = info.device if info.device.type == "cuda" else torch.device("cpu")
    n = torch.tensor([len(values)], device=device)
    counts = [torch.zeros_like(n) for _ in range(info.world_size)]
    dist.all_gather(counts, n)
    longest = int(max(c.item() for c in counts))
    padded = torch.zeros(longest, dtype=torch.float64, device=device)
    padded[:len(values)] = torch.from_numpy(values).to(device)
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return np.concatenate([p[:int(c.item())].cpu().numpy() for p, c in zip(parts, counts)])


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: ``all_gather`` concatenated along dim 0. Backward: the gradient of the whole
    concatenation summed over ranks (``all_reduce``), this rank's slice returned. An all-reduce
    of a few projections is cheap; torch's own ``torch.distributed.nn`` all_gather is deprecated
    and emulates reduce-scatter with an all-to-all on gloo."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor)
        ctx.rank, ctx.rows = dist.get_rank(), tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0 in rank order, differentiable: the
    backward pass sums, over ranks, the gradients that reach each rank's slice and returns the
    sum to the rank it came from. Every rank must pass the same shape and run the backward pass
    (both passes are collectives). One process: ``tensor`` itself."""
    if not info.active:
        return tensor
    return _AllGatherWithGrad.apply(tensor)


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """``obj`` from rank ``src`` on every rank (picklable objects)."""
    if not info.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src,
                               device=info.device if info.device.type == "cuda" else None)
    return box[0]


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's picklable ``obj``, in rank order, on every rank."""
    if not info.active:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
