"""SimCLR and BYOL building blocks: NT-Xent against a hand computation (padding, temperature,
bf16, DDP through torchrun), the BYOL loss, momentum schedule and EMA, the heads."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import free_port
from train.distributed import DistInfo, all_gather_with_grad
from train.ssl import (BYOL_BASE_MOMENTUM, SIMCLR_TEMPERATURE, ProjectionHead, byol_loss,
                       byol_mlp, byol_symmetric_loss, ema_update, make_target, momentum_at,
                       nt_xent, simclr_head)

HERE = Path(__file__).resolve().parent

Z1 = [[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]]
Z2 = [[0.9, 0.3, 1.5], [-0.2, -1.0, 0.4]]


def _unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def _dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def hand_nt_xent(z1, z2, t, weight=None):
    """NT-Xent with explicit loops: views 0..n-1 first views, n..2n-1 second views."""
    n = len(z1)
    views = [_unit(v) for v in z1] + [_unit(v) for v in z2]
    w = list(weight) if weight is not None else [1.0] * n
    keep = w + w
    total, count = 0.0, 0
    for a in range(2 * n):
        if not keep[a]:
            continue
        p = (a + n) % (2 * n)
        denom = sum(math.exp(_dot(views[a], views[k]) / t)
                    for k in range(2 * n) if k != a and keep[k])
        total += -math.log(math.exp(_dot(views[a], views[p]) / t) / denom)
        count += 1
    return total / count


def _t(rows):
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_equals_hand_computation(t):
    got = nt_xent(_t(Z1), _t(Z2), t)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(hand_nt_xent(Z1, Z2, t), rel=1e-5)


def test_nt_xent_padded_slot_is_neither_anchor_nor_negative():
    z1 = [Z1[0], [3.0, 3.0, -3.0], Z1[1]]
    z2 = [Z2[0], [-1.0, 2.0, 0.5], Z2[1]]
    weight = torch.tensor([1.0, 0.0, 1.0])
    a1, a2 = _t(z1).requires_grad_(True), _t(z2).requires_grad_(True)
    got = nt_xent(a1, a2, 0.5, weight=weight)
    assert got.item() == pytest.approx(hand_nt_xent(z1, z2, 0.5, [1, 0, 1]), rel=1e-5)
    assert got.item() == pytest.approx(hand_nt_xent(Z1, Z2, 0.5), rel=1e-5)
    assert got.item() == pytest.approx(nt_xent(_t(Z1), _t(Z2), 0.5).item(), rel=1e-6)
    got.backward()
    assert torch.all(a1.grad[1] == 0) and torch.all(a2.grad[1] == 0)
    assert torch.isfinite(a1.grad).all() and a1.grad[0].abs().sum() > 0


def test_nt_xent_temperature_and_scale():
    z1, z2 = _t(Z1), _t(Z2)
    # scale-free (cosine similarity); a very high temperature flattens to log(2N - 1)
    assert nt_xent(3 * z1, 0.5 * z2, 0.2).item() == pytest.approx(nt_xent(z1, z2, 0.2).item())
    assert nt_xent(z1, z2, 1e6).item() == pytest.approx(math.log(3), rel=1e-5)
    # the temperature changes the loss (its exact role: the hand computations above)
    assert nt_xent(z1, z2, 0.1).item() != pytest.approx(nt_xent(z1, z2, 0.5).item())
    assert SIMCLR_TEMPERATURE == 0.1
    assert nt_xent(z1, z2).item() == pytest.approx(hand_nt_xent(Z1, Z2, 0.1), rel=1e-5)


def test_nt_xent_float32_math_under_bf16():
    z1, z2 = _t(Z1).bfloat16(), _t(Z2).bfloat16()
    expected = nt_xent(z1.float(), z2.float(), 0.1)
    got = nt_xent(z1, z2, 0.1)
    assert got.dtype == torch.float32 and got.item() == pytest.approx(expected.item(), rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = nt_xent(z1.float(), z2.float(), 0.1)
    assert under.dtype == torch.float32 and under.item() == pytest.approx(expected.item(),
                                                                          rel=1e-6)


def test_all_gather_with_grad_is_identity_on_one_process():
    x = torch.randn(3, 2)
    assert all_gather_with_grad(x, DistInfo(0, 1, 0, torch.device("cpu"))) is x


def test_nt_xent_sees_other_ranks_negatives_under_torchrun(tmp_path):
    """Two gloo ranks, 3 samples each: the mean of the rank losses is the NT-Xent of the
    6-sample batch in one process, unlike the rank-local losses; the gradient w.r.t. each
    rank's slice is world_size times the one-process gradient (the all_gather backward sums
    every rank's gradient; DDP then divides by the world size)."""
    from ssl_ddp_worker import global_batch

    per_rank, world, t = 3, 2, 0.5
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc_per_node", str(world), "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(HERE / "ssl_ddp_worker.py"),
           str(tmp_path), str(per_rank), str(t)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    z1, z2, weight = global_batch(per_rank, world)
    for name, w in (("plain", None), ("padded", weight)):
        a1, a2 = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
        full = nt_xent(a1, a2, t, weight=w)
        full.backward()
        losses = [r[name]["loss"] for r in ranks]
        assert sum(losses) / world == pytest.approx(full.item(), rel=1e-5)
        hand = hand_nt_xent(z1.tolist(), z2.tolist(), t, None if w is None else w.tolist())
        assert full.item() == pytest.approx(hand, rel=1e-5)
        for r, rec in enumerate(ranks):
            assert rec[name]["loss"] != pytest.approx(rec[name]["local_loss"], rel=1e-3)
            part = slice(r * per_rank, (r + 1) * per_rank)
            torch.testing.assert_close(torch.tensor(rec[name]["grad1"]), world * a1.grad[part],
                                       rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(torch.tensor(rec[name]["grad2"]), world * a2.grad[part],
                                       rtol=1e-4, atol=1e-6)
    # the padded slot (last of rank 1) gets no gradient
    assert ranks[1]["padded"]["grad1"][-1] == [0.0] * 5


# --- BYOL ------------------------------------------------------------------------------------

def test_byol_loss_formula():
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]], requires_grad=True)
    z = torch.tensor([[0.0, 2.0], [5.0, 0.0], [-1.0, 0.0], [1.0, 2.0]], requires_grad=True)
    got = byol_loss(p, z)
    cos = (3 * 1 + 4 * 2) / (5 * math.sqrt(5))
    torch.testing.assert_close(got, torch.tensor([2.0, 0.0, 4.0, 2 - 2 * cos]))
    got.sum().backward()
    assert z.grad is None and p.grad is not None          # the target side is detached
    assert byol_loss(p.bfloat16(), z.bfloat16()).dtype == torch.float32


def test_byol_symmetric_loss_sums_both_directions_over_unpadded():
    gen = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(4, 3, generator=gen) for _ in range(4))
    weight = torch.tensor([1.0, 1.0, 0.0, 1.0])
    per = byol_loss(p1, z2) + byol_loss(p2, z1)
    assert byol_symmetric_loss(p1, p2, z1, z2).item() == pytest.approx(per.mean().item())
    assert byol_symmetric_loss(p1, p2, z1, z2, weight).item() == pytest.approx(
        per[[0, 1, 3]].mean().item())


def test_momentum_schedule():
    k, base = 1000, BYOL_BASE_MOMENTUM
    assert base == 0.996
    assert momentum_at(0, k) == pytest.approx(base)
    assert momentum_at(k // 2, k) == pytest.approx(1 - (1 - base) / 2)
    assert momentum_at(k, k) == pytest.approx(1.0)
    assert momentum_at(k + 50, k) == pytest.approx(1.0)
    assert momentum_at(300, k, base=0.99) == pytest.approx(
        1 - 0.01 * (math.cos(math.pi * 0.3) + 1) / 2)
    with pytest.raises(ValueError):
        momentum_at(0, 0)


def _net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_ema_update_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    online, target = _net(), make_target(_net())
    assert all(not p.requires_grad for p in target.parameters())
    online(torch.randn(8, 3))                             # moves the online BN running stats
    before = [p.clone() for p in target.parameters()]
    tau = 0.9
    ema_update(target, online, tau)
    for t, b, o in zip(target.parameters(), before, online.parameters()):
        torch.testing.assert_close(t, tau * b + (1 - tau) * o)
    for t, o in zip(target.buffers(), online.buffers()):
        assert torch.equal(t, o)
    ema_update(target, online, 0.0)                       # tau 0: the online network
    for t, o in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(t, o)
    with pytest.raises(ValueError):
        ema_update(target, nn.Linear(3, 4), 0.5)


def test_heads():
    head = simclr_head(512)
    assert head.dim == 128 and head(torch.randn(4, 512)).shape == (4, 128)
    assert head.net[0].out_features == 2048
    projector, predictor = byol_mlp(512), byol_mlp(256)
    assert projector.net[0].out_features == 4096 and projector.dim == 256
    assert predictor(projector(torch.randn(4, 512))).shape == (4, 256)
    assert isinstance(ProjectionHead(16, 8, 4).net[1], nn.BatchNorm1d)
