"""Shards on object storage (moto S3 on 127.0.0.1) and over HTTP (a local http.server)."""
import hashlib
import http.server
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import threading

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
    head = s3_server.client().head_object(Bucket=bucket, Key="direct/val-000000.tar")
    assert head["Metadata"]["sha256"] == records[0]["sha256"]


def test_stream_from_s3_through_webdataset(s3_server, tmp_path):
    wds = pytest.importorskip("webdataset")
    openers.register_gopen()
    keys = _local_set(tmp_path, fmt="png")
    bucket = s3_server.new_bucket()
    assert upload.upload(tmp_path, f"s3://{bucket}/p").ok
    urls = manifest.shard_urls(f"s3://{bucket}/p", "train")
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


# Self-contained (DALI and numpy only) so that the child process starts fast.
DALI_S3_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    from nvidia.dali import fn, pipeline_def, types
    urls, idx = json.loads(sys.argv[1]), json.loads(sys.argv[2])

    @pipeline_def(batch_size=2, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.readers.webdataset(
            paths=urls, index_paths=idx, ext=["left.u16", "right.u16", "json"],
            dtypes=[types.UINT16, types.UINT16, types.UINT8],
            missing_component_behavior="error", name="reader"))

    p = pipe()
    p.build()
    total = p.reader_meta("reader")["epoch_size"]
    rows = []
    while len(rows) < total:
        out = p.run()
        rows += [[hashlib.sha256(np.array(b.at(i)).tobytes()).hexdigest() for b in out]
                 for i in range(len(out[0]))]
    print(json.dumps(rows[:total]))
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
        [sys.executable, "-c", DALI_S3_SCRIPT, json.dumps(manifest.shard_urls(root, "train")),
         json.dumps(manifest.index_urls(root, "train"))],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = []
    for name in ("train-000000.tar", "train-000001.tar"):
        with tarfile.open(tmp_path / name) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        expected += [[hashlib.sha256(members[f"{k}.{f}"]).hexdigest()
                      for f in ("left.u16", "right.u16", "json")]
                     for k in dict.fromkeys(n.split(".")[0] for n in members)]
    assert len(rows) == len(keys) and rows == expected


def test_stream_over_http(http_server, tmp_path):
    wds = pytest.importorskip("webdataset")
    keys = _local_set(tmp_path, fmt="png")
    base = http_server(tmp_path)
    urls = manifest.shard_urls(base, "train")
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


class _FlakyRangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file with Range support; the first full GET dies half-way through the body."""

    data = b""
    calls: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        start = 0
        if "Range" in self.headers:
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
        self.calls.append(start)
        body = self.data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if len(self.calls) == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


def test_http_stream_resumes_after_a_dropped_connection(tmp_path, monkeypatch):
    keys = _local_set(tmp_path, fmt="raw", counts=(6,))
    data = (tmp_path / "train-000000.tar").read_bytes()
    handler = type("Handler", (_FlakyRangeHandler,), {"data": data, "calls": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(openers, "BACKOFF_S", 0.001)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/train-000000.tar"
        with openers.open_url(url) as stream:
            assert stream.read() == data
        assert handler.calls[0] == 0 and handler.calls[1] > 0  # resumed with a Range request
        handler.calls.clear()
        # A streaming tar reader on top sees every member.
        with openers.open_url(url) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            names = [m.name for m in tar]
        assert [n.split(".")[0] for n in names][::3] == keys and len(handler.calls) == 2
    finally:
        server.shutdown()
        server.server_close()
