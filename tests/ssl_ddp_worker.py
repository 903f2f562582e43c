"""One rank of the SimCLR DDP test (started by torchrun from test_train_ssl.py): takes its
slice of a fixed global batch of projections, computes ``nt_xent`` with and without the other
ranks' negatives, and writes the losses and the gradient w.r.t. its slice to OUT/rank<r>.json."""
from __future__ import annotations

import json
import sys

import torch

from train import distributed
from train.ssl import nt_xent


def global_batch(per_rank: int, world: int, dim: int = 5):
    """The whole batch every rank rebuilds: ``z1``, ``z2`` ``[world * per_rank, dim]`` and a
    weight with the last slot of the last rank padded."""
    gen = torch.Generator().manual_seed(7)
    z1 = torch.randn(world * per_rank, dim, generator=gen, dtype=torch.float64).float()
    z2 = torch.randn(world * per_rank, dim, generator=gen, dtype=torch.float64).float()
    weight = torch.ones(world * per_rank)
    weight[-1] = 0.0
    return z1, z2, weight


def main() -> None:
    torch.set_num_threads(1)
    out, per_rank, temperature = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    info = distributed.setup("cpu")
    z1_all, z2_all, weight_all = global_batch(per_rank, info.world_size)
    part = slice(info.rank * per_rank, (info.rank + 1) * per_rank)
    record = {"rank": info.rank, "world_size": info.world_size}
    for name, weight in (("plain", None), ("padded", weight_all[part])):
        z1 = z1_all[part].clone().requires_grad_(True)
        z2 = z2_all[part].clone().requires_grad_(True)
        loss = nt_xent(z1, z2, temperature, info, weight=weight)
        loss.backward()
        local = nt_xent(z1_all[part], z2_all[part], temperature, None, weight=weight)
        record[name] = {"loss": loss.item(), "local_loss": local.item(),
                        "grad1": z1.grad.tolist(), "grad2": z2.grad.tolist()}
    with open(f"{out}/rank{info.rank}.json", "w") as f:
        json.dump(record, f)
    distributed.barrier(info)           # no rank leaves while another is in a collective
    distributed.cleanup()


if __name__ == "__main__":
    main()
