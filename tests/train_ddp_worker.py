"""One rank of the DDP test (started by torchrun from test_train_ddp.py): records the samples
its training loader reads in one epoch, trains, and writes what it saw to OUT/rank<r>.json."""
from __future__ import annotations

import json
import sys

import numpy as np
import torch

from train import distributed, loop
from train.checkpoint import load_checkpoint
from train.config import TrainConfig
from train.mixture import from_state


def main() -> None:
    torch.set_num_threads(1)
    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    info = distributed.setup(config.device)
    loader = loop.pair_loader(config, info, config.split, train=True)
    keys = [k for b in loader for k, pad in zip(b["key"], b["is_pad"].tolist()) if not pad]
    loader.close()
    result = loop.train(config, progress=False)
    distributed.barrier(info)           # rank 0 has written last.pt
    grid = np.linspace(0.0, 1.0, 11)
    record = {"rank": info.rank, "world_size": info.world_size, "keys": keys,
              "steps": result.steps, "mixtures": result.mixtures,
              "posterior": [from_state(m).posterior_high(grid).tolist()
                            for m in result.mixtures],
              "labels": {k: result.labels.p[:, i].tolist()
                         for i, k in enumerate(result.labels.keys.tolist())},
              "saved_step": load_checkpoint(f"{config.out}/last.pt")["step"]}
    with open(f"{config.out}/rank{info.rank}.json", "w") as f:
        json.dump(record, f)
    distributed.cleanup()


if __name__ == "__main__":
    main()
