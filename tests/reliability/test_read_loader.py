"""The loader does not trust the manifest blindly: counts checked both ways, an optional
sha256 check per shard, and ``on_error="skip"`` that leaves bad samples out, counts them and
keeps every rank's batches equal."""
from __future__ import annotations

import pytest
from read_sets import (COUNTS, damage_sample, edit_manifest, flip_byte, pair_set, png_claiming,
                       shard_name)

from loaders import make_loader
from loaders.reading import ShardChecksumError, ShardCountError
from loaders.synthetic import real_keys
from shards import schema

TOTAL = sum(COUNTS)


def _count(root, shard, samples, *, drop_index=False):
    def change(data):
        record = data["splits"]["train"]["shards"][shard]
        record["samples"] = samples
        if drop_index:
            record.pop("index_name", None)
    edit_manifest(root, change)


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "streamed"])
@pytest.mark.parametrize("stated", [COUNTS[1] - 1, COUNTS[1] + 1], ids=["lower", "higher"])
def test_a_count_that_disagrees_with_the_shard_is_an_error(tmp_path, indexed, stated):
    root = pair_set(tmp_path)
    _count(root, 1, stated, drop_index=not indexed)
    loader = make_loader(root, batch_size=4, workers=0, shuffle_buffer=1)
    with pytest.raises(ShardCountError, match=shard_name(root, 1)):
        list(loader)


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "streamed"])
def test_a_lower_count_is_reported_when_skipping(tmp_path, indexed):
    root = pair_set(tmp_path)
    _count(root, 1, COUNTS[1] - 1, drop_index=not indexed)
    loader = make_loader(root, batch_size=4, workers=0, on_error="skip")
    keys = real_keys(list(loader))
    stats = loader.epoch_stats(0)
    assert len(keys) == TOTAL - 1 and stats["samples_skipped"] == 0
    said = "the index lists 7 samples, the manifest says 6" if indexed \
        else "holds more than the 6 samples"
    assert any(said in p for p in stats["problems"])


def test_a_higher_count_skips_only_the_missing_samples(tmp_path):
    root = pair_set(tmp_path)
    _count(root, 1, COUNTS[1] + 2)
    loader = make_loader(root, batch_size=4, workers=0, on_error="skip")
    keys = real_keys(list(loader))
    stats = loader.epoch_stats(0)
    assert len(keys) == TOTAL and stats["samples_skipped"] == 2
    assert all("the index lists 7 samples, the manifest says 9" in s["reason"]
               for s in stats["skipped"])


def test_a_flipped_raw_pixel_is_caught_by_verify_sha256(tmp_path):
    root = pair_set(tmp_path, fmt="raw")
    flip_byte(root, shard=1, sample=3, field="left.u16", at=10)
    assert len(real_keys(list(make_loader(root, batch_size=4, workers=0)))) == TOTAL  # unseen
    loader = make_loader(root, batch_size=4, workers=0, verify="sha256")
    with pytest.raises(ShardChecksumError, match=f"{shard_name(root, 1)}: sha256"):
        list(loader)


def test_an_edited_metadata_value_is_caught_by_verify_sha256(tmp_path):
    root = pair_set(tmp_path, fmt="raw")
    flip_byte(root, shard=2, sample=0, field="json", at=2)
    loader = make_loader(root, batch_size=4, workers=0, verify="sha256", on_error="skip")
    keys = real_keys(list(loader))
    stats = loader.epoch_stats(0)
    assert len(keys) == TOTAL - COUNTS[2] and stats["samples_skipped"] == COUNTS[2]
    assert all(shard_name(root, 2) in s["shard"] and "sha256" in s["reason"]
               for s in stats["skipped"])


@pytest.mark.parametrize("workers", [0, 2])
def test_a_bad_sample_is_skipped_and_counted_every_epoch(tmp_path, workers):
    root = pair_set(tmp_path)
    bad = damage_sample(root, lambda s: s.update({"left.png": png_claiming(9000, 9000)}))
    with pytest.raises(schema.SchemaError, match=bad):
        list(make_loader(root, batch_size=4, workers=workers))
    loader = make_loader(root, batch_size=4, workers=workers, on_error="skip")
    for epoch in range(2):
        batches = list(loader)
        keys = real_keys(batches)
        assert len(batches) == len(loader)
        assert bad not in keys and len(keys) == len(set(keys)) == TOTAL - 1
        stats = loader.epoch_stats(epoch)
        assert stats["samples_skipped"] == 1
        assert stats["skipped"][0]["key"] == bad
        assert shard_name(root, 1) in stats["skipped"][0]["shard"]
        assert "PNG header says 9000x9000" in stats["skipped"][0]["reason"]
    loader.close()


@pytest.mark.parametrize("mode", ["pairs", "ssl"])
def test_skipping_keeps_ranks_equal(tmp_path, mode):
    root = pair_set(tmp_path)
    flip_byte(root, shard=0, sample=0, field="json", at=2)
    loaders = [make_loader(root, mode=mode, batch_size=3, workers=0, rank=r, world_size=2,
                           verify="sha256", on_error="skip") for r in range(2)]
    runs = [list(loader) for loader in loaders]
    assert len(runs[0]) == len(runs[1]) == len(loaders[0])
    skipped = sum(loader.epoch_stats(0)["samples_skipped"] for loader in loaders)
    units = 2 if mode == "ssl" else 1
    assert skipped == COUNTS[0] * units
    assert len(real_keys(runs[0])) + len(real_keys(runs[1])) == (TOTAL - COUNTS[0]) * units


def test_a_truncated_shard_is_skipped_and_counted(tmp_path):
    root = pair_set(tmp_path)
    _count(root, 1, COUNTS[1], drop_index=True)
    path = f"{root}/{shard_name(root, 1)}"
    with open(path, "r+b") as f:
        f.truncate(2048)
    loader = make_loader(root, batch_size=4, workers=0, on_error="skip")
    keys = real_keys(list(loader))
    stats = loader.epoch_stats(0)
    assert len(keys) + stats["samples_skipped"] == TOTAL
    assert stats["samples_skipped"] >= COUNTS[1] - 1
    with pytest.raises(OSError, match=shard_name(root, 1)):
        list(make_loader(root, batch_size=4, workers=0))


def test_bad_options_are_refused(tmp_path):
    root = pair_set(tmp_path)
    with pytest.raises(ValueError, match="on_error"):
        make_loader(root, on_error="ignore")
    with pytest.raises(ValueError, match="verify"):
        make_loader(root, verify="md5")
    with pytest.raises(ValueError, match="DALI backend"):
        make_loader(root, backend="dali", on_error="skip")
