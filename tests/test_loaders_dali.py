"""The DALI backend on the CPU (device_id=None), and its agreement with the torch backend."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("nvidia.dali")

from loaders import AugmentSpec, make_loader, synthetic  # noqa: E402
from loader_checks import real_keys  # noqa: E402

SPEC = AugmentSpec(size=8)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_sample_once_and_equal_batches(pairs_root, world):
    keys, counts = [], []
    for rank in range(world):
        loader = make_loader(pairs_root, backend="dali", batch_size=4, augment=SPEC, rank=rank,
                             world_size=world, workers=1, shuffle_buffer=4)
        batches = list(loader)
        counts.append(len(batches))
        assert len(batches) == len(loader)
        assert all(b["left"].shape == (4, 1, 8, 8) and b["is_pad"].shape == (4,)
                   for b in batches)
        keys += real_keys(batches)
    assert len(set(counts)) == 1
    assert sorted(keys) == [f"pair_{i:06d}" for i in range(15)]


def test_same_rank_counts_as_torch(pairs_root):
    for world in (1, 2):
        dali = make_loader(pairs_root, backend="dali", batch_size=4, world_size=world)
        torch_ = make_loader(pairs_root, backend="torch", batch_size=4, world_size=world)
        assert len(dali) == len(torch_)


def test_resume_skips_consumed_batches(pairs_root):
    kwargs = dict(backend="dali", batch_size=2, augment=SPEC, workers=1, seed=2,
                  shuffle_buffer=4)
    full = list(make_loader(pairs_root, **kwargs))
    first = make_loader(pairs_root, **kwargs)
    head = []
    for batch in first:
        head.append(batch)
        if len(head) == 3:
            break
    resumed = make_loader(pairs_root, **kwargs)
    resumed.load_state_dict(first.state_dict())
    tail = list(resumed)
    assert real_keys(head + tail) == real_keys(full)
    assert all(torch.equal(x["left"], y["left"]) for x, y in zip(head + tail, full))


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_identity_augmentation_is_identical_on_both_backends(tmp_path, fmt):
    root = synthetic.pair_set(tmp_path / fmt, counts=(6, 4), size=16, fmt=fmt)
    spec = AugmentSpec.identity(16)
    out = {}
    for backend in ("torch", "dali"):
        batches = list(make_loader(root, backend=backend, batch_size=5, augment=spec, workers=1))
        out[backend] = {k: (b["left"][i], b["right"][i], b["area"][i])
                        for b in batches for i, k in enumerate(b["key"])}
    assert sorted(out["torch"]) == sorted(out["dali"])
    for key, (left, right, area) in out["torch"].items():
        d_left, d_right, d_area = out["dali"][key]
        assert torch.equal(left, d_left) and torch.equal(right, d_right) and area == d_area


def test_augmentation_statistics_agree(tmp_path):
    root = synthetic.pair_set(tmp_path / "stats", counts=(100, 100), size=24)
    spec = AugmentSpec(size=16, scale=(0.3, 1.0), gamma=(0.6, 1.6), contrast=(0.6, 1.4),
                       hflip=0.5, vflip=0.5)
    stats = {}
    for backend in ("torch", "dali"):
        batches = list(make_loader(root, backend=backend, batch_size=50, augment=spec, workers=1,
                                   seed=5))
        x = torch.cat([torch.cat([b["left"], b["right"]]) for b in batches])
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 16, 16)
        assert 0.0 <= x.min() and x.max() <= 1.0
        per_image = x.flatten(1)
        stats[backend] = (per_image.mean(1), per_image.std(1))
    # 400 patches each: the mean and the spread of per-patch means and contrasts agree
    for i in range(2):
        t, d = stats["torch"][i], stats["dali"][i]
        assert abs(t.mean() - d.mean()) < 0.02, (i, t.mean(), d.mean())
        assert abs(t.std() - d.std()) < 0.2 * t.std(), (i, t.std(), d.std())


def test_ssl_and_labelled_modes(tmp_path, pairs_root):
    batches = list(make_loader(pairs_root, backend="dali", mode="ssl", batch_size=4,
                               augment=SPEC))
    assert sorted(real_keys(batches)) == sorted(
        f"pair_{i:06d}/{s}" for i in range(15) for s in ("left", "right"))
    assert batches[0]["view1"].shape == (4, 1, 8, 8)
    root = synthetic.patch_set(tmp_path / "patches", counts=(6, 5))
    batches = list(make_loader(root, backend="dali", mode="labelled", batch_size=4,
                               augment=SPEC))
    assert sorted(real_keys(batches)) == [f"patch_{i:05d}" for i in range(11)]
    assert batches[0]["label"].tolist() == [m["label"] for m in batches[0]["meta"]]


def test_odd_ssl_batch_is_refused(pairs_root):
    with pytest.raises(ValueError, match="even"):
        make_loader(pairs_root, backend="dali", mode="ssl", batch_size=3)


def test_fixed_photometric_values_and_whole_patch_crop(pairs_root):
    spec = AugmentSpec(size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), gamma=(2.0, 2.0),
                       contrast=(1.0, 1.0), hflip=0.0)
    out = {}
    for backend in ("torch", "dali"):
        batches = list(make_loader(pairs_root, backend=backend, batch_size=5, augment=spec))
        out[backend] = {k: b["left"][i] for b in batches for i, k in enumerate(b["key"])}
    for key, left in out["torch"].items():
        # the resize filters differ in detail (roi_align vs DALI's antialias), the gamma is the
        # same fixed value: per-patch means agree closely
        assert abs(left.mean() - out["dali"][key].mean()) < 0.01


def test_fewer_samples_than_ranks_is_a_clear_error(tmp_path):
    root = synthetic.pair_set(tmp_path / "one", counts=(1,))
    with pytest.raises(ValueError, match="at least one per rank"):
        list(make_loader(root, backend="dali", batch_size=2, world_size=2, rank=1))
    # the torch backend pads the empty rank with flagged repeats
    batches = list(make_loader(root, batch_size=2, world_size=2, rank=0, workers=0,
                               augment=SPEC))
    assert len(batches) == 1 and batches[0]["is_pad"].all()
