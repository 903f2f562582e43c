"""Shards on object storage (moto S3 on 127.0.0.1) and over HTTP (a local http.server)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from shards import cli, manifest, openers, sampledata, upload, verify, writer


def _local_set(root, fmt="raw", counts=(4, 3), split="train"):
    records, keys = [], []
    start = 0
    for index, count in enumerate(counts):
        samples = sampledata.pair_samples(count, 96, fmt, seed=index, start=start, split=split)
        start += count
        records.append(writer.write_shard(samples, root, split, index))
        keys += [s["__key__"] for s in samples]
    manifest.write_manifest(root, manifest.build_manifest(records, {"format": fmt}))
    return keys


def test_upload_is_resumable_and_puts_the_manifest_last(s3_server, tmp_path, capsys):
    keys = _local_set(tmp_path)
    bucket = s3_server.new_bucket()
    dest = f"s3://{bucket}/sets/v1"

    assert cli.main(["upload", str(tmp_path), dest, "--quiet"]) == 0
    names = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert names == ["sets/v1/manifest.json", "sets/v1/train-000000.idx", "sets/v1/train-000000.tar",
                     "sets/v1/train-000001.idx", "sets/v1/train-000001.tar"]
    head = s3_server.client().head_object(Bucket=bucket, Key="sets/v1/train-000000.tar")
    assert head["Metadata"]["sha256"] == manifest.read_manifest(tmp_path)["splits"]["train"]["shards"][0]["sha256"]

    again = upload.upload(tmp_path, dest)
    assert again.ok and again.skipped and again.uploaded == ["manifest.json"]

    # A remote object that differs is replaced; the others are left alone.
    s3_server.client().put_object(Bucket=bucket, Key="sets/v1/train-000001.tar", Body=b"junk")
    third = upload.upload(tmp_path, dest)
    assert third.uploaded == ["train-000001.tar", "manifest.json"]

    assert cli.main(["ls", dest]) == 0
    assert "train-000001.tar" in capsys.readouterr().out
    report = verify.verify(dest, sample_fraction=1.0)
    assert report.ok, report.all_problems
    assert sum(s.samples for s in report.shards) == len(keys)


def test_upload_refuses_a_damaged_local_shard(s3_server, tmp_path):
    _local_set(tmp_path)
    with open(tmp_path / "train-000001.tar", "r+b") as f:
        f.seek(700)
        f.write(b"X")
    bucket = s3_server.new_bucket()
    report = upload.upload(tmp_path, f"s3://{bucket}/x")
    assert not report.ok and "train-000001.tar" in report.failed[0]
    names = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "x/manifest.json" not in names and "x/train-000001.tar" not in names


def test_writer_and_manifest_write_straight_to_s3(s3_server, tmp_path):
    bucket = s3_server.new_bucket()
    dest = f"s3://{bucket}/direct"
    records = [writer.write_shard(sampledata.pair_samples(3, 96, "png"), dest, "val", 0)]
    manifest.write_manifest(dest, manifest.build_manifest(records, {}))
    got = manifest.read_manifest(dest)
    assert got["totals"]["samples"] == 3
    assert verify.verify(dest, sample_fraction=1.0).ok
    # Nothing else (no temporary objects) is visible.
    names = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"])
    assert names == ["direct/manifest.json", "direct/val-000000.idx", "direct/val-000000.tar"]


def test_stream_from_s3_through_webdataset(s3_server, tmp_path):
    wds = pytest.importorskip("webdataset")
    keys = _local_set(tmp_path, fmt="png")
    bucket = s3_server.new_bucket()
    assert upload.upload(tmp_path, f"s3://{bucket}/p").ok
    urls = openers.shard_urls(f"s3://{bucket}/p", "train")
    assert urls[0] == f"s3://{bucket}/p/train-000000.tar"
    seen = [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)]
    assert seen == keys


def test_missing_s3_object_is_a_clear_error(s3_server):
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/nothing/train-000000.tar"
    with pytest.raises(FileNotFoundError, match=url):
        openers.open_url(url)
    with pytest.raises(FileNotFoundError, match="no manifest"):
        manifest.read_manifest(f"s3://{bucket}/nothing")


DALI_S3_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[3])
    from test_shards_readers import dali_read
    urls, idx = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    rows = dali_read(urls, idx, "raw", batch_size=2)
    print(json.dumps([[len(x) for x in row] for row in rows]))
""")


def test_dali_streams_from_s3_with_a_custom_endpoint(s3_server, tmp_path):
    pytest.importorskip("nvidia.dali")
    keys = _local_set(tmp_path, fmt="raw")
    bucket = s3_server.new_bucket()
    root = f"s3://{bucket}/d"
    assert upload.upload(tmp_path, root).ok
    # DALI's S3 client reads AWS_ENDPOINT_URL once per process, when it is first used; a fresh
    # process gets this server's endpoint whatever earlier tests did.
    env = dict(os.environ, **s3_server.env)
    proc = subprocess.run(
        [sys.executable, "-c", DALI_S3_SCRIPT, json.dumps(openers.shard_urls(root, "train")),
         json.dumps(openers.index_urls(root, "train")), os.path.dirname(__file__)],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(rows) == len(keys)
    assert all(row[0] == row[1] == 96 * 96 * 2 for row in rows)


def test_stream_over_http(http_server, tmp_path):
    wds = pytest.importorskip("webdataset")
    keys = _local_set(tmp_path, fmt="png")
    base = http_server(tmp_path)
    urls = openers.shard_urls(base, "train")
    assert urls == [f"{base}/train-000000.tar", f"{base}/train-000001.tar"]
    assert [s["__key__"] for s in wds.WebDataset(urls, shardshuffle=False)] == keys
    with openers.open_url(urls[1]) as stream:
        assert stream.read() == (tmp_path / "train-000001.tar").read_bytes()
    assert verify.verify(base, sample_fraction=1.0).ok
    missing = f"{base}/absent.tar"
    with pytest.raises(FileNotFoundError, match=missing):
        openers.open_url(missing)


def test_transient_errors_are_retried_with_backoff(monkeypatch):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset by peer")
        return "stream"

    monkeypatch.setattr(openers, "BACKOFF_S", 0.001)
    assert openers.with_retries(flaky, "s3://b/k") == "stream" and len(calls) == 3
    calls.clear()
    with pytest.raises(openers.TransientError, match="s3://b/k"):
        openers.with_retries(lambda: (_ for _ in ()).throw(TimeoutError("slow")), "s3://b/k", retries=2)

    def missing():
        calls.append(1)
        raise FileNotFoundError("nope")

    calls.clear()
    with pytest.raises(FileNotFoundError, match="s3://b/k"):
        openers.with_retries(missing, "s3://b/k")
    assert len(calls) == 1  # a missing object is not retried


def test_endpoint_from_parameter_or_environment(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    assert openers.endpoint_url() == "http://127.0.0.1:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2")
    assert openers.endpoint_url() == "http://127.0.0.1:2"
    assert openers.endpoint_url("http://127.0.0.1:3") == "http://127.0.0.1:3"
