import json

import pytest

from shards import manifest, sampledata, schema, writer


def _records(tmp_path):
    records = []
    for split, index, count in [("val", 0, 2), ("train", 1, 3), ("train", 0, 4), ("test", 0, 1)]:
        samples = sampledata.pair_samples(count, 96, split=split, start=10 * index)
        records.append(writer.write_shard(samples, tmp_path, split, index))
    return records


def test_build_merges_records_in_any_order(tmp_path):
    records = _records(tmp_path)
    params = {"size": 96, "format": "png", "seed": 1}
    built = manifest.build_manifest(records, params, extra={"pixel_format": "png"})
    assert built["format_version"] == schema.FORMAT_VERSION
    assert list(built["splits"]) == ["train", "val", "test"]
    train = built["splits"]["train"]
    assert [s["name"] for s in train["shards"]] == ["train-000000.tar", "train-000001.tar"]
    assert train["samples"] == 7 and train["shard_count"] == 2
    assert train["bytes"] == sum(r["bytes"] for r in records if r["split"] == "train")
    assert built["totals"] == {"shards": 4, "samples": 10, "bytes": sum(r["bytes"] for r in records)}
    assert built["params_hash"] == manifest.params_hash({"seed": 1, "format": "png", "size": 96})
    assert built["pixel_format"] == "png"
    assert {"python", "numpy", "webdataset"} <= set(built["software"])
    # Reversed input gives the same content.
    again = manifest.build_manifest(records[::-1], params, extra={"pixel_format": "png"})
    assert manifest.content_digest(again) == manifest.content_digest(built)


def test_content_digest_ignores_time_and_versions_only(tmp_path):
    built = manifest.build_manifest(_records(tmp_path), {"seed": 1})
    other = dict(built, created="2000-01-01T00:00:00+00:00", software={"python": "0"})
    assert manifest.content_digest(other) == manifest.content_digest(built)
    changed = json.loads(json.dumps(built))
    changed["splits"]["val"]["shards"][0]["sha256"] = "0" * 64
    assert manifest.content_digest(changed) != manifest.content_digest(built)
    assert manifest.content_digest(dict(built, params={"seed": 2})) != manifest.content_digest(built)


def test_write_is_atomic_and_reads_back(tmp_path):
    built = manifest.build_manifest(_records(tmp_path), {"seed": 1})
    path = manifest.write_manifest(tmp_path, built)
    assert path == str(tmp_path / "manifest.json")
    assert not [p for p in tmp_path.iterdir() if writer.is_temporary(p.name)]
    assert manifest.read_manifest(tmp_path) == built
    assert manifest.read_manifest(tmp_path / "manifest.json") == built
    assert manifest.read_manifest(f"file://{tmp_path}") == built


def test_shard_urls_from_the_manifest(tmp_path):
    manifest.write_manifest(tmp_path, manifest.build_manifest(_records(tmp_path), {}))
    assert manifest.shard_urls(tmp_path, "train") == [str(tmp_path / "train-000000.tar"),
                                                     str(tmp_path / "train-000001.tar")]
    assert manifest.index_urls(tmp_path, "val") == [str(tmp_path / "val-000000.idx")]
    assert manifest.shard_urls(f"file://{tmp_path}", "val") == [str(tmp_path / "val-000000.tar")]
    with pytest.raises(KeyError, match="no split 'dev'"):
        manifest.shard_urls(tmp_path, "dev")


def test_duplicates_and_reserved_keys_are_rejected(tmp_path):
    records = _records(tmp_path)
    with pytest.raises(manifest.ManifestError, match="appears twice"):
        manifest.build_manifest(records + records[:1], {})
    with pytest.raises(manifest.ManifestError, match="reserved"):
        manifest.build_manifest(records, {}, extra={"totals": 1})
    with pytest.raises(manifest.ManifestError, match="lacks"):
        manifest.build_manifest([{"name": "x.tar"}], {})


@pytest.mark.parametrize("name", ["pipe:curl http://x | cat", "../train-000000.tar",
                                  "sub/train-000000.tar", "s3://b/train-000000.tar", ".hidden.tar"])
def test_unsafe_shard_names_in_a_manifest_are_refused(tmp_path, name):
    built = manifest.build_manifest(_records(tmp_path), {})
    built["splits"]["val"]["shards"][0]["name"] = name
    (tmp_path / "manifest.json").write_text(json.dumps(built))
    with pytest.raises(manifest.ManifestError, match="unsafe shard name"):
        manifest.read_manifest(tmp_path)


def test_inconsistent_or_missing_manifests_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        manifest.read_manifest(tmp_path)
    built = manifest.build_manifest(_records(tmp_path), {})
    built["splits"]["train"]["samples"] += 1
    (tmp_path / "manifest.json").write_text(json.dumps(built))
    with pytest.raises(manifest.ManifestError, match="does not add up"):
        manifest.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(dict(built, format_version=99)))
    with pytest.raises(manifest.ManifestError, match="format_version 99"):
        manifest.read_manifest(tmp_path)
    doubled = manifest.build_manifest(_records(tmp_path), {})
    val = doubled["splits"]["val"]
    val["shards"] *= 2
    val["samples"] *= 2
    val["bytes"] *= 2
    doubled["totals"] = {"shards": 5, "samples": doubled["totals"]["samples"] + val["samples"] // 2,
                         "bytes": doubled["totals"]["bytes"] + val["bytes"] // 2}
    (tmp_path / "manifest.json").write_text(json.dumps(doubled))
    with pytest.raises(manifest.ManifestError, match="listed twice"):
        manifest.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(manifest.ManifestError, match="unreadable JSON"):
        manifest.read_manifest(tmp_path)


def _write_one(out, split, index):
    samples = sampledata.pair_samples(3, 96, "raw", seed=index, split=split, start=3 * index)
    return writer.write_shard(samples, out, split, index)


def test_parallel_dask_writers_merge_into_the_serial_manifest(tmp_path):
    dask = pytest.importorskip("dask")
    jobs = [("train", 0), ("train", 1), ("train", 2), ("val", 0)]
    tasks = [dask.delayed(_write_one)(str(tmp_path / "parallel"), s, i) for s, i in jobs]
    records = dask.compute(*tasks, scheduler="processes", num_workers=2)
    parallel = manifest.build_manifest(records, {"seed": 0})
    manifest.write_manifest(tmp_path / "parallel", parallel)
    serial = manifest.build_manifest([_write_one(tmp_path / "serial", s, i) for s, i in jobs],
                                     {"seed": 0})
    assert manifest.content_digest(parallel) == manifest.content_digest(serial)
    assert manifest.read_manifest(tmp_path / "parallel")["totals"]["samples"] == 12
    for name in ("train-000002.tar", "val-000000.idx"):
        assert (tmp_path / "parallel" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
