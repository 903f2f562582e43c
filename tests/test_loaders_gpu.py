"""The GPU paths of both backends, checked against the CPU paths that CI tests.

Skipped where there is no CUDA device (CI). On a GPU machine:
``python -m pytest -q tests/test_loaders_gpu.py`` (DALI's tests also need ``nvidia.dali``).
"""
from __future__ import annotations

import pytest
import torch

from loaders import AugmentSpec, make_loader, synthetic
from loader_checks import real_keys

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

SPEC = AugmentSpec(size=16, scale=(0.3, 1.0), gamma=(0.6, 1.6), contrast=(0.6, 1.4),
                   hflip=0.5, vflip=0.5)


def _by_key(batches, names=("left", "right")):
    return {k: tuple(b[n][i].cpu() for n in names)
            for b in batches for i, k in enumerate(b["key"])}


def _stats(batches):
    x = torch.cat([torch.cat([b["left"], b["right"]]).cpu() for b in batches])
    assert x.dtype == torch.float32 and 0.0 <= x.min() and x.max() <= 1.0
    per_image = x.flatten(1)
    return per_image.mean(1), per_image.std(1)


def _agree(a, b):
    for i in range(2):
        assert abs(a[i].mean() - b[i].mean()) < 0.02, (i, a[i].mean(), b[i].mean())
        assert abs(a[i].std() - b[i].std()) < 0.2 * a[i].std(), (i, a[i].std(), b[i].std())


@pytest.fixture(scope="module")
def stats_root(tmp_path_factory):
    return synthetic.pair_set(tmp_path_factory.mktemp("gpu-stats"), counts=(100, 100), size=24)


@pytest.mark.parametrize("fmt", ["png", "raw"])
@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_identity_on_the_gpu_equals_the_cpu_torch_backend(tmp_path, fmt, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    root = synthetic.pair_set(tmp_path / fmt, counts=(6, 4), size=16, fmt=fmt)
    spec = AugmentSpec.identity(16)
    cpu = _by_key(list(make_loader(root, batch_size=5, augment=spec, workers=1)))
    gpu_batches = list(make_loader(root, backend=backend, batch_size=5, augment=spec,
                                   workers=1, device="cuda"))
    assert all(b["left"].device.type == "cuda" for b in gpu_batches)
    gpu = _by_key(gpu_batches)
    assert sorted(cpu) == sorted(gpu)
    # the torch path divides on the device as on the CPU: bit for bit; DALI's kernels may be
    # built with faster division, so within an ulp of values in [0, 1]
    atol = 0.0 if backend == "torch" else 1.2e-7
    for key, (left, right) in cpu.items():
        assert torch.allclose(left, gpu[key][0], rtol=0.0, atol=atol), key
        assert torch.allclose(right, gpu[key][1], rtol=0.0, atol=atol), key


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_augmentation_on_the_gpu_draws_like_the_cpu(stats_root, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    cpu = _stats(list(make_loader(stats_root, batch_size=50, augment=SPEC, workers=1, seed=5)))
    gpu = list(make_loader(stats_root, backend=backend, batch_size=50, augment=SPEC, workers=2,
                           seed=5, device="cuda"))
    assert gpu[0]["left"].shape == (50, 1, 16, 16) and gpu[0]["left"].is_cuda
    _agree(cpu, _stats(gpu))


def test_torch_gpu_batches_equal_their_cpu_augmentation_draws(pairs_root):
    """Same seed, same draws: the GPU's roi_align crop and the CPU's resize differ only in the
    filter's detail, so matching batches stay close."""
    kwargs = dict(batch_size=4, augment=AugmentSpec(size=8), workers=2, seed=3)
    cpu = _by_key(list(make_loader(pairs_root, **kwargs)))
    gpu = _by_key(list(make_loader(pairs_root, device="cuda", **kwargs)))
    assert sorted(cpu) == sorted(gpu)
    for key in cpu:
        assert (cpu[key][0] - gpu[key][0]).abs().mean() < 0.05, key


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_every_sample_once_on_the_gpu(pairs_root, backend, world):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    keys, counts = [], []
    for rank in range(world):
        loader = make_loader(pairs_root, backend=backend, batch_size=4,
                             augment=AugmentSpec(size=8), rank=rank, world_size=world,
                             workers=2, shuffle_buffer=4, device="cuda")
        batches = list(loader)
        counts.append(len(batches))
        keys += real_keys(batches)
    assert len(set(counts)) == 1
    assert sorted(keys) == [f"pair_{i:06d}" for i in range(15)]


def test_ssl_mode_on_the_gpu(pairs_root):
    batches = list(make_loader(pairs_root, mode="ssl", batch_size=4,
                               augment=AugmentSpec(size=8), workers=2, device="cuda"))
    assert batches[0]["view1"].is_cuda and batches[0]["view2"].shape == (4, 1, 8, 8)
    assert sorted(real_keys(batches)) == sorted(
        f"pair_{i:06d}/{s}" for i in range(15) for s in ("left", "right"))
