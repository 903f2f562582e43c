"""DDP through torchrun (gloo, CPU, 2 ranks): disjoint samples per rank, one P for all."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import free_port
from train.config import TrainConfig
from train_data import split_set

HERE = Path(__file__).resolve().parent


def test_two_ranks_read_disjoint_samples_and_share_the_mixture(tmp_path):
    root = split_set(tmp_path / "shards")            # 24 training pairs, 8 validation pairs
    out = tmp_path / "run"
    config = TrainConfig(shards=root, out=str(out), encoder="tiny", size=16, batch_size=4,
                         epochs=2, workers=0, lr=0.5, warmup_epochs=0.5, device="cpu",
                         val_bootstrap=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HERE / "train_ddp_worker.py"),
           json.dumps(config.to_dict())]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    keys = [set(r["keys"]) for r in ranks]
    assert not keys[0] & keys[1]
    assert sorted(keys[0] | keys[1]) == [f"pair_{i:06d}" for i in range(24)]
    assert all(r["world_size"] == 2 and r["steps"] == 6 for r in ranks)   # 12 pairs / 4 a step
    # one mixture for every rank, fitted on the distances of all 24 pairs
    assert ranks[0]["mixtures"] == ranks[1]["mixtures"]
    assert ranks[0]["posterior"] == ranks[1]["posterior"]
    assert all(m["n"] == 24 for m in ranks[0]["mixtures"])
    # and the same label P for every training pair, whichever rank scored it
    assert ranks[0]["labels"] == ranks[1]["labels"]
    assert sorted(ranks[0]["labels"]) == sorted(keys[0] | keys[1])
    assert ranks[0]["saved_step"] == 6
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 7))


def test_the_baselines_train_on_two_ranks(tmp_path):
    """``train simclr`` and ``train byol`` under torchrun: every rank takes the same steps over
    its half of the patches (SimCLR's negatives gathered from both ranks, BYOL's target updated
    on each), and rank 0 writes the run."""
    root = split_set(tmp_path / "shards")            # 48 training patches, 16 validation
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    for method in ("simclr", "byol"):
        out = tmp_path / method
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
               "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "train.cli", method, "--shards", root,
               "--out", str(out), "--encoder", "tiny", "--size", "16", "--batch-size", "4",
               "--epochs", "1", "--workers", "0", "--device", "cpu", "--head-hidden", "16",
               "--head-out", "8", "--no-progress"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["world_size"] == 2 and summary["steps"] == 6   # 24 patches / 4 a step
        assert summary["best"]["val_loss"] is not None
