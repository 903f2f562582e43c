"""Encoders: one-channel patch ``[B, 1, H, W]`` -> embedding ``[B, dim]`` (global average pool).

* ``resnet18``: torchvision's ResNet-18, the paper's encoder (dim 512). Its stem is made
  one-channel by replacing ``conv1`` (3 -> 64, 7x7, stride 2) with a fresh 1 -> 64 convolution
  of the same shape, initialised as torchvision initialises every convolution (Kaiming normal,
  fan-out). The network is trained from scratch (``weights=None``), so there are no pretrained
  RGB kernels worth summing into the new one; a fresh layer keeps torchvision's initialisation
  scale. ``fc`` is replaced by the identity: the output is the 512-d pooled feature.
* ``resnet18-half``: the same layout (2, 2, 2, 2 basic blocks) at half the width (dim 256),
  about a quarter of the compute: for CPU demos.
* ``small``: one basic block per stage, widths 16..128, a 3x3 stride-2 stem without max-pool (dim 128):
  a CPU demo that trains in minutes on 2 cores.
* ``tiny``: two convolutions, no BatchNorm (dim 16): for tests (gradient accumulation is
  exact on it).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock


def _one_channel_resnet18() -> nn.Module:
    net = resnet18(weights=None)
    old = net.conv1
    net.conv1 = nn.Conv2d(1, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                          padding=old.padding, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.fc = nn.Identity()
    net.dim = 512
    return net


class NarrowResNet(nn.Module):
    """A ResNet of torchvision ``BasicBlock`` stages with chosen widths and depths."""

    def __init__(self, widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2), *, imagenet_stem=True):
        super().__init__()
        first = widths[0]
        if imagenet_stem:   # 7x7 stride 2 then max-pool, as ResNet-18
            stem = [nn.Conv2d(1, first, 7, 2, 3, bias=False), nn.BatchNorm2d(first),
                    nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
        else:               # small patches: keep the resolution for the first stage
            stem = [nn.Conv2d(1, first, 3, 2, 1, bias=False), nn.BatchNorm2d(first),
                    nn.ReLU(inplace=True)]
        layers, inplanes = [], first
        for i, (width, count) in enumerate(zip(widths, blocks)):
            for j in range(count):
                stride = 2 if (i > 0 and j == 0) else 1
                down = None
                if stride != 1 or inplanes != width:
                    down = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride, bias=False),
                                         nn.BatchNorm2d(width))
                layers.append(BasicBlock(inplanes, width, stride, down))
                inplanes = width
        self.features = nn.Sequential(*stem, *layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dim = inplanes
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class TinyEncoder(nn.Module):
    """Two strided convolutions and a pool; no BatchNorm, so sub-batches sum to the batch."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(8, width, 3, 2, 1), nn.ReLU())
        self.dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


ENCODERS = {
    "resnet18": _one_channel_resnet18,
    "resnet18-half": lambda: NarrowResNet((32, 64, 128, 256), (2, 2, 2, 2)),
    "small": lambda: NarrowResNet((16, 32, 64, 128), (1, 1, 1, 1), imagenet_stem=False),
    "tiny": TinyEncoder,
}


def make_encoder(name: str) -> nn.Module:
    """A freshly initialised encoder by name (``ENCODERS``); it has ``.dim``."""
    try:
        return ENCODERS[name]()
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; expected one of {sorted(ENCODERS)}") \
            from None
