"""LARS: BatchNorm and bias parameters excluded; one step against a hand computation."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from train.encoders import make_encoder
from train.lars import LARS, param_groups, warmup_cosine
from train_data import one_torch_thread  # noqa: F401 (fixture)


def test_groups_exclude_batchnorm_and_bias():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4, 2))
    adapted, plain = param_groups(model, weight_decay=0.1)
    assert adapted["lars"] and adapted["weight_decay"] == 0.1
    assert not plain["lars"] and plain["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(adapted["params"]) == ids([model[0].weight, model[4].weight])
    assert ids(plain["params"]) == ids([model[0].bias, model[1].weight, model[1].bias,
                                        model[4].bias])


def test_resnet18_groups_cover_every_parameter_once():
    model = make_encoder("resnet18")
    adapted, plain = param_groups(model, 1e-6)
    assert len(adapted["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert all(p.ndim > 1 for p in adapted["params"])          # conv and linear weights
    assert all(p.ndim == 1 for p in plain["params"])           # BN weights and biases


def test_one_step_by_hand():
    w = nn.Parameter(torch.tensor([3.0, 4.0]))       # ||w|| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])
    opt = LARS([{"params": [w], "weight_decay": 0.1, "lars": True},
                {"params": [b], "weight_decay": 0.0, "lars": False}],
               lr=2.0, momentum=0.9, weight_decay=0.1, trust=0.01)
    opt.step()
    # g = [0.6, 0.8] + 0.1 [3, 4] = [0.9, 1.2], ||g|| = 1.5; ratio = 0.01 * 5 / 1.5 = 1/30
    # update = lr * ratio * g = 2 * [0.03, 0.04]
    assert w.detach().tolist() == pytest.approx([2.94, 3.92], abs=1e-6)
    assert b.item() == pytest.approx(1.0 - 2.0 * 0.5, abs=1e-7)   # plain SGD, no decay
    # second step: momentum buffer 0.9 * old + new scaled gradient
    w.grad, b.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])
    norm_w = math.hypot(2.94, 3.92)
    g = [0.6 + 0.1 * 2.94, 0.8 + 0.1 * 3.92]
    ratio = 0.01 * norm_w / math.hypot(*g)
    buf = [0.9 * 0.03 + ratio * g[0], 0.9 * 0.04 + ratio * g[1]]
    opt.step()
    assert w.detach().tolist() == pytest.approx([2.94 - 2 * buf[0], 3.92 - 2 * buf[1]], abs=1e-6)
    assert b.item() == pytest.approx(0.0 - 2.0 * (0.9 * 0.5 + 0.5), abs=1e-6)


def test_warmup_then_cosine():
    f = warmup_cosine(4, 12)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(8) == pytest.approx(0.5)
    assert f(12) == pytest.approx(0.0, abs=1e-12) and f(100) == pytest.approx(0.0, abs=1e-12)
