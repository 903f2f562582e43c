"""The torch backend: exactly once per epoch over ranks x workers, resume, modes, contract."""
from __future__ import annotations

import pytest
import torch

from loaders import AugmentSpec, make_loader, synthetic
from loader_checks import real_keys

SPEC = AugmentSpec(size=8)


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 1, 2])
def test_every_sample_once_and_equal_batches(pairs_root, world, workers):
    keys, counts = [], []
    for rank in range(world):
        loader = make_loader(pairs_root, batch_size=4, augment=SPEC, rank=rank,
                             world_size=world, workers=workers, shuffle_buffer=4)
        batches = list(loader)
        counts.append(len(batches))
        assert len(batches) == len(loader)
        assert all(b["left"].shape == (4, 1, 8, 8) for b in batches)
        keys += real_keys(batches)
    assert len(set(counts)) == 1
    assert sorted(keys) == [f"pair_{i:06d}" for i in range(15)]


def test_order_is_deterministic_and_changes_per_epoch(pairs_root):
    def run(epoch, workers):
        loader = make_loader(pairs_root, batch_size=4, augment=SPEC, workers=workers,
                             seed=7, epoch=epoch, shuffle_buffer=8)
        return list(loader)

    a, b, c = run(0, 0), run(0, 0), run(1, 0)
    assert real_keys(a) == real_keys(b)
    assert all(torch.equal(x["left"], y["left"]) for x, y in zip(a, b))
    assert real_keys(a) != real_keys(c)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("interrupt", [1, 2])
def test_resume_continues_the_uninterrupted_sequence(pairs_root, workers, interrupt):
    kwargs = dict(batch_size=2, augment=SPEC, workers=workers, seed=3, shuffle_buffer=4)
    full = list(make_loader(pairs_root, **kwargs))
    first = make_loader(pairs_root, **kwargs)
    head = []
    for batch in first:
        head.append(batch)
        if len(head) == interrupt:
            break
    state = first.state_dict()
    assert state["batches_done"] == interrupt
    resumed = make_loader(pairs_root, **kwargs)
    resumed.load_state_dict(state)
    tail = list(resumed)
    assert [b["batch_index"] for b in head + tail] == [b["batch_index"] for b in full]
    assert real_keys(head + tail) == real_keys(full)
    assert all(torch.equal(x["left"], y["left"]) for x, y in zip(head + tail, full))
    assert resumed.epoch == 1 and resumed.state_dict()["batches_done"] == 0


def test_resume_refuses_another_world(pairs_root):
    state = make_loader(pairs_root, batch_size=2, workers=0).state_dict()
    other = make_loader(pairs_root, batch_size=2, workers=0, world_size=2)
    with pytest.raises(ValueError, match="world_size"):
        other.load_state_dict(state)


def test_output_contract_pairs(pairs_root):
    batch = next(iter(make_loader(pairs_root, batch_size=4, workers=0,
                                  augment=AugmentSpec.identity(16))))
    assert batch["left"].dtype == torch.float32 and batch["left"].shape == (4, 1, 16, 16)
    assert 0.0 <= batch["left"].min() and batch["right"].max() <= 1.0
    # identity: exactly the stored uint16 values over 2**12 - 1
    from shards import schema
    import webdataset as wds
    import glob, os
    stored = {}
    for tar in glob.glob(os.path.join(pairs_root, "*.tar")):
        for s in wds.WebDataset(tar, shardshuffle=False, empty_check=False):
            stored[s["__key__"]] = schema.decode_pair(s)
    for i, key in enumerate(batch["key"]):
        expect = torch.from_numpy(stored[key].left.astype("float32")) / 4095.0
        assert torch.equal(batch["left"][i, 0], expect)
    assert batch["area"].dtype == torch.float32
    assert [m["area"]["pair"] for m in batch["meta"]] == pytest.approx(batch["area"].tolist())


def test_ssl_mode_gives_each_patch_once_with_two_views(pairs_root):
    loader = make_loader(pairs_root, mode="ssl", batch_size=4, augment=SPEC, workers=1)
    batches = list(loader)
    keys = real_keys(batches)
    assert sorted(keys) == sorted(f"pair_{i:06d}/{s}" for i in range(15) for s in ("left", "right"))
    b = batches[0]
    assert b["view1"].shape == b["view2"].shape == (4, 1, 8, 8)
    assert not torch.equal(b["view1"], b["view2"])


def test_labelled_mode(tmp_path):
    root = synthetic.patch_set(tmp_path / "patches", counts=(6, 5))
    batches = list(make_loader(root, mode="labelled", batch_size=4, augment=SPEC, workers=0))
    assert sorted(real_keys(batches)) == [f"patch_{i:05d}" for i in range(11)]
    b = batches[0]
    assert b["image"].shape == (4, 1, 8, 8) and b["label"].dtype == torch.int64
    assert b["label"].tolist() == [m["label"] for m in b["meta"]]


def test_raw_format_matches_png(tmp_path):
    png = synthetic.pair_set(tmp_path / "png", counts=(4,), fmt="png")
    raw = synthetic.pair_set(tmp_path / "raw", counts=(4,), fmt="raw")
    a = next(iter(make_loader(png, batch_size=4, workers=0, augment=SPEC, seed=1)))
    b = next(iter(make_loader(raw, batch_size=4, workers=0, augment=SPEC, seed=1)))
    assert a["key"] == b["key"] and torch.equal(a["left"], b["left"])


def test_bad_arguments_are_clear(pairs_root):
    with pytest.raises(ValueError, match="mode"):
        make_loader(pairs_root, mode="triplets")
    with pytest.raises(ValueError, match="rank"):
        make_loader(pairs_root, rank=2, world_size=2)
    with pytest.raises(KeyError, match="no split"):
        make_loader(pairs_root, split="val")


def test_shards_without_index_are_streamed(tmp_path):
    from shards import manifest, sampledata, writer

    records = [writer.write_shard(sampledata.pair_samples(n, 16, seed=i, start=10 * i),
                                  tmp_path, "train", i, write_index=False)
               for i, n in enumerate((3, 4))]
    manifest.write_manifest(tmp_path, manifest.build_manifest(records, {"size": 16}))
    batches = list(make_loader(tmp_path, batch_size=2, augment=SPEC, workers=0, world_size=2,
                               rank=1))
    batches += list(make_loader(tmp_path, batch_size=2, augment=SPEC, workers=0, world_size=2,
                                rank=0))
    assert sorted(real_keys(batches)) == [f"pair_{i:06d}" for i in (0, 1, 2, 10, 11, 12, 13)]


def test_truncated_shard_is_a_clear_error(tmp_path):
    root = synthetic.pair_set(tmp_path / "s", counts=(4,))
    import json
    import os

    path = os.path.join(root, "manifest.json")
    data = json.load(open(path))
    data["splits"]["train"]["shards"][0]["samples"] = 6    # manifest promises more than exists
    data["splits"]["train"]["samples"] = 6
    data["totals"]["samples"] = 6
    json.dump(data, open(path, "w"))
    with pytest.raises(ValueError, match="train-000000.tar"):
        list(make_loader(root, batch_size=2, augment=SPEC, workers=0))


def test_workers_persist_across_epochs_with_the_same_batches(pairs_root):
    kwargs = dict(batch_size=2, augment=SPEC, workers=2, seed=5, shuffle_buffer=4)
    loader = make_loader(pairs_root, **kwargs)
    epoch0 = list(loader)
    pool = [w.pid for w in loader._torch_cache[2]._iterator._workers]
    partial = []
    for batch in loader:             # epoch 1, left after 3 batches, then resumed
        partial.append(batch)
        if len(partial) == 3:
            break
    partial += list(loader)
    epoch2 = list(loader)
    assert [w.pid for w in loader._torch_cache[2]._iterator._workers] == pool
    for epoch, batches in enumerate([epoch0, partial, epoch2]):
        fresh = list(make_loader(pairs_root, epoch=epoch, **kwargs))
        assert [b["key"] for b in batches] == [b["key"] for b in fresh]
        assert all(torch.equal(a["left"], b["left"]) for a, b in zip(batches, fresh))
    loader.close()
    assert loader._torch_cache is None


def test_kept_batches_stay_valid_across_many_batches(pairs_root):
    kwargs = dict(batch_size=1, augment=SPEC, seed=2, shuffle_buffer=4)
    kept = list(make_loader(pairs_root, workers=2, **kwargs))   # every batch held to the end
    assert len(kept) > 12    # more than the workers have in flight
    plain = list(make_loader(pairs_root, workers=0, **kwargs))
    # the batch order depends on the worker count; each batch's content does not
    expected = {b["key"][0]: b for b in plain}
    assert sorted(expected) == sorted(b["key"][0] for b in kept)
    assert all(torch.equal(b["left"], expected[b["key"][0]]["left"]) and
               torch.equal(b["right"], expected[b["key"][0]]["right"]) for b in kept)


def test_a_loader_with_live_workers_pickles_without_them(pairs_root):
    import pickle

    loader = make_loader(pairs_root, batch_size=4, augment=SPEC, workers=1, seed=1)
    first = next(iter(loader))
    copy = pickle.loads(pickle.dumps(loader))
    assert copy._torch_cache is None and loader._torch_cache is not None
    copy.set_epoch(0)
    assert next(iter(copy))["key"] == first["key"]
    loader.close()


def test_workers_start_after_the_caller_used_opencv_threads(pairs_root):
    """OpenCV's thread pool, running in the caller's process, must not hang forked workers."""
    import subprocess
    import sys

    script = (
        "import sys, cv2, numpy as np\n"
        "cv2.setNumThreads(2)\n"
        "big = np.random.rand(2000, 2000).astype(np.float32)\n"
        "cv2.resize(big, (2400, 2400))   # starts the pool's threads\n"
        "from loaders import AugmentSpec, make_loader\n"
        "loader = make_loader(sys.argv[1], batch_size=2, augment=AugmentSpec(size=8), workers=2)\n"
        "print(len(list(loader)), flush=True)\n"
        "loader.close()\n"
        "cv2.resize(big, (2400, 2400))   # and the caller's OpenCV still works\n")
    done = subprocess.run([sys.executable, "-c", script, str(pairs_root)], capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["8"]


def test_a_killed_worker_is_an_error_and_the_next_iteration_resumes(pairs_root):
    import os
    import signal
    import time

    kwargs = dict(batch_size=1, augment=SPEC, seed=4, shuffle_buffer=4)
    full = real_keys(list(make_loader(pairs_root, workers=0, **kwargs)))
    loader = make_loader(pairs_root, workers=2, **kwargs)
    head = []
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        for batch in loader:
            head.append(batch)
            if len(head) == 3:
                os.kill(loader.worker_pids()[0], signal.SIGKILL)
                time.sleep(1.0)      # the DataLoader notices on its next step (or here)
    assert loader.state_dict()["batches_done"] == len(head)
    tail = list(loader)              # fresh workers, from the next unseen batch
    assert len(head) + len(tail) == len(loader)
    assert sorted(real_keys(head + tail)) == sorted(full)
    loader.close()


def test_default_crop_is_the_shard_sets_patch_size(tmp_path):
    from shards import manifest, sampledata, writer

    with_size = synthetic.pair_set(tmp_path / "sized", counts=(3,), size=16)
    assert make_loader(with_size, batch_size=2, workers=0).augment.size == 16
    # a manifest that does not give the size: the first sample's
    record = writer.write_shard(sampledata.pair_samples(3, 24), tmp_path / "unsized", "train", 0)
    manifest.write_manifest(tmp_path / "unsized", manifest.build_manifest([record], {}))
    batch = next(iter(make_loader(tmp_path / "unsized", batch_size=2, workers=0)))
    assert batch["left"].shape == (2, 1, 24, 24)
    assert make_loader(with_size, augment=SPEC, workers=0).augment.size == 8
