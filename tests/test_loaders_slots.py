"""Reused shared-memory output slots: batches stay valid while kept, slots come back, none leak."""
from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from loaders import AugmentSpec, make_loader
from loaders.slots import SlotPool

SPEC = AugmentSpec(size=8)


def _pool_of(loader):
    return loader._torch_cache[1].slots


def _settle(pool):
    gc.collect()
    return pool.handed.numpy().copy(), pool.returned.numpy().copy()


def test_pool_gives_a_slot_back_when_the_last_view_is_freed():
    pool = SlotPool(workers=1, per_worker=2)
    lease = pool.lease(0)
    block = lease.alloc((2, 3, 4), torch.float32)
    block.copy_(torch.arange(24, dtype=torch.float32).view(2, 3, 4))
    sent = lease.ship({"a": block[:, :1], "b": block[:, 1:], "key": ["x", "y"]})
    assert sent["a"] is None and sent["key"] == ["x", "y"]   # descriptors travel, not the data
    got = pool.receive(sent)
    assert torch.equal(got["b"], torch.arange(24, dtype=torch.float32).view(2, 3, 4)[:, 1:])
    kept = got["b"][0]          # a view of a view keeps the slot
    del got, sent
    gc.collect()
    assert pool.returned[0].sum() == 0
    assert kept.sum() == sum(range(4, 12))
    del kept
    gc.collect()
    assert torch.equal(pool.handed, pool.returned)


def test_pool_falls_back_to_fresh_memory_when_every_slot_is_held():
    pool = SlotPool(workers=1, per_worker=1)
    held = []
    for i in range(3):
        lease = pool.lease(0)
        x = lease.alloc((4,), torch.float32)
        x.fill_(i)
        held.append(pool.receive(lease.ship({"x": x}))["x"])
    assert [h.tolist() for h in held] == [[0.0] * 4, [1.0] * 4, [2.0] * 4]
    assert pool.fallbacks.tolist() == [2]


def test_pool_gives_back_slots_of_batches_dropped_unseen():
    pool = SlotPool(workers=1, per_worker=3)
    shipped = []
    for _ in range(3):
        lease = pool.lease(0)
        shipped.append(lease.ship({"x": lease.alloc((4,), torch.float32)}))
    assert pool.handed.sum() == 3
    got = pool.receive(shipped.pop())    # the first two were dropped by the DataLoader
    gc.collect()
    assert pool.returned.tolist() == [[1, 1, 0]]
    del got
    gc.collect()
    assert torch.equal(pool.handed, pool.returned)


def test_a_failed_batch_leaves_its_slot_free():
    pool = SlotPool(workers=1, per_worker=1)
    lease = pool.lease(0)
    lease.alloc((4,), torch.float32)
    lease.cancel()
    assert torch.equal(pool.handed, pool.returned)


def _checksums(batches):
    return [(b["batch_index"], float(b["left"].double().sum()), float(b["right"].double().sum()))
            for b in batches]


def test_workers_reuse_slots_and_match_the_in_process_loader(pairs_root):
    kwargs = dict(batch_size=2, augment=SPEC, seed=5, shuffle_buffer=4)
    want = _checksums(list(make_loader(pairs_root, workers=0, **kwargs)))
    loader = make_loader(pairs_root, workers=2, **kwargs)
    got = []
    for _ in range(3):    # three epochs, each batch checked and dropped at once
        got.append([])
        for batch in loader:
            got[-1] += _checksums([batch])
            del batch
    first = make_loader(pairs_root, workers=0, **kwargs)
    list(first)
    assert sorted(got[0]) == sorted(want)           # workers interleave their batch blocks
    assert sorted(got[1]) == sorted(_checksums(list(first)))   # the next epoch, in process
    pool = _pool_of(loader)
    handed, returned = _settle(pool)
    assert (handed == returned).all()
    assert handed.max() > 1                          # slots were written more than once
    assert pool.fallbacks.sum() == 0
    loader.close()


def test_kept_batches_are_never_overwritten(pairs_root):
    loader = make_loader(pairs_root, batch_size=1, augment=SPEC, workers=2, seed=1)
    kept, sums = [], []
    for batch in loader:   # 15 batches from 2 workers with 6 slots each: fallbacks too
        kept.append(batch)
        sums.append(float(batch["left"].double().sum()))
    assert [float(b["left"].double().sum()) for b in kept] == sums
    pool = _pool_of(loader)
    assert pool.fallbacks.sum() > 0
    del kept, batch
    handed, returned = _settle(pool)
    assert (handed == returned).all()
    loader.close()


@pytest.mark.parametrize("stop_after", [1, 3])
def test_an_abandoned_epoch_leaks_no_slot(pairs_root, stop_after):
    loader = make_loader(pairs_root, batch_size=2, augment=SPEC, workers=2, seed=2)
    for i, batch in enumerate(loader):
        if i + 1 == stop_after:
            break
    del batch
    loader.set_epoch(1)
    assert len(list(loader)) == len(loader)
    pool = _pool_of(loader)
    handed, returned = _settle(pool)
    assert (handed == returned).all()
    loader.close()


def test_uint16_batches_for_a_device_travel_through_slots(pairs_root):
    """Workers that ship undecorated uint16 batches (training on a GPU) use the slots too."""
    from loaders import modes
    from shards.shardset import open_shard_set
    from loaders.torch_pipeline import PlannedBatches, batch_loader, close_loader

    shard_set = open_shard_set(pairs_root, "train")
    make = dict(batch_size=3, seed=0, rank=0, world_size=1, n_batches=5,
                shuffle_buffer=4, cache_dir=None)
    alone = PlannedBatches(shard_set, "pairs", workers=0, **make)
    alone.start(0, 0)
    want = {b["batch_index"]: b["pixels"].copy() for b in alone}
    dataset = PlannedBatches(shard_set, "pairs", workers=2, **make)
    dataset.start(0, 0)
    loader = batch_loader(dataset, 2)
    try:
        got = {}
        for raw in loader:
            batch = dataset.receive(raw)
            assert isinstance(batch["pixels"], np.ndarray) and batch["pixels"].dtype == np.uint16
            got[batch["batch_index"]] = batch["pixels"].copy()
            out = modes.finish("pairs", batch, SPEC, seed=0, epoch=0, rank=0)
            assert out["left"].dtype == torch.float32
        assert got.keys() == want.keys()
        assert all(np.array_equal(got[j], want[j]) for j in want)
        assert dataset.slots.handed.sum() > 0
    finally:
        close_loader(loader)


def test_a_damaged_sample_in_a_worker_is_a_clear_error(tmp_path):
    """A worker's decode error reaches the caller naming the shard and the sample."""
    import tarfile

    from loaders import synthetic
    from shards import schema

    root = synthetic.pair_set(tmp_path / "s", counts=(6,), fmt="png")
    shard = tmp_path / "s" / "train-000000.tar"
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("left.png"))
        key = member.name.split(".", 1)[0]
    data = bytearray(shard.read_bytes())
    start = member.offset_data + 40          # inside the image data: CRC and inflate fail
    data[start:start + 16] = b"\xff" * 16
    shard.write_bytes(bytes(data))
    loader = make_loader(root, batch_size=2, augment=SPEC, workers=2, seed=0,
                         shuffle_buffer=1)
    with pytest.raises(schema.SchemaError, match=key) as info:
        list(loader)
    assert "train-000000.tar" in str(info.value)
    loader.close()


def test_other_values_of_a_batch_travel_untouched():
    pool = SlotPool(workers=1, per_worker=1)
    lease = pool.lease(0)
    x = lease.alloc((2,), torch.float32)
    x.fill_(3.0)
    names = np.array(["a", "b"])          # not a tensor type: left as it is
    got = pool.receive(lease.ship({"x": x, "names": names, "flags": np.ones(2, bool),
                                   "meta": [{"k": 1}]}))
    assert got["x"].tolist() == [3.0, 3.0]
    assert got["names"] is names and got["flags"].tolist() == [True, True]
    assert got["meta"] == [{"k": 1}]


def test_slots_with_workers_started_by_a_forkserver(pairs_root, monkeypatch):
    """Where fork is unsafe (macOS) the workers start from a forkserver: the pool's shared
    counters then travel pickled, and batches and slots behave the same."""
    import multiprocessing as mp

    from loaders import torch_pipeline

    monkeypatch.setattr(torch_pipeline, "_context", lambda: mp.get_context("forkserver"))
    kwargs = dict(batch_size=2, augment=SPEC, seed=6, shuffle_buffer=4)
    want = sorted(_checksums(list(make_loader(pairs_root, workers=0, **kwargs))))
    loader = make_loader(pairs_root, workers=2, **kwargs)
    got = []
    for _ in range(2):    # the second epoch finds the first one's slots free again
        got.append([])
        for batch in loader:
            got[-1] += _checksums([batch])
            del batch
    assert sorted(got[0]) == want
    pool = _pool_of(loader)
    handed, returned = _settle(pool)
    assert (handed == returned).all() and handed.max() > 1 and pool.fallbacks.sum() == 0
    loader.close()
