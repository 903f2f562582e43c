import hashlib
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time

import numpy as np
import pytest

from shards import dali_index, sampledata, samples, schema, writer


def _read_tar(path):
    """{key: {field: bytes}} in tar order, read with the standard library only."""
    samples = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, _, field = member.name.partition(".")
            samples.setdefault(key, {})[field] = tar.extractfile(member).read()
    return samples


@pytest.mark.parametrize("fmt", ["png", "raw"])
@pytest.mark.parametrize("size,count", [(96, 12), (256, 3)])
def test_round_trip_is_bit_exact(tmp_path, fmt, size, count):
    rng = np.random.default_rng(size)
    images, samples = [], []
    for i in range(count):
        left, right = sampledata.tissue_patch(rng, size), sampledata.tissue_patch(rng, size)
        images.append((left, right))
        samples.append(schema.encode_pair(f"k{i:03d}", left, right,
                                          sampledata.pair_meta(size, number=i), fmt=fmt))
    record = writer.write_shard(iter(samples), tmp_path, "train", 7)

    assert record["name"] == "train-000007.tar" and record["index_name"] == "train-000007.idx"
    assert record["samples"] == count and record["split"] == "train" and record["index"] == 7
    path = tmp_path / record["name"]
    data = path.read_bytes()
    assert record["bytes"] == len(data) and record["sha256"] == hashlib.sha256(data).hexdigest()
    read = _read_tar(path)
    assert list(read) == [f"k{i:03d}" for i in range(count)]
    for i, (key, fields) in enumerate(read.items()):
        decoded = schema.decode_pair({"__key__": key, **fields}, where=record["name"])
        assert decoded.left.dtype == np.uint16
        assert np.array_equal(decoded.left, images[i][0])
        assert np.array_equal(decoded.right, images[i][1])
        assert fields == {k: v for k, v in samples[i].items() if k != "__key__"}


def test_headers_are_deterministic_and_byte_identical(tmp_path):
    samples = sampledata.pair_samples(5, 96, seed=3)
    a = writer.write_shard(samples, tmp_path / "a", "val", 0)
    b = writer.write_shard(list(samples), tmp_path / "b", "val", 0)
    assert a == b
    assert (tmp_path / "a" / a["name"]).read_bytes() == (tmp_path / "b" / b["name"]).read_bytes()
    with tarfile.open(tmp_path / "a" / a["name"]) as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o444)}
    assert [m.name for m in members[:3]] == ["pair_000000.json", "pair_000000.left.png", "pair_000000.right.png"]


def test_dali_index_matches_tar_offsets_and_wds2idx(tmp_path):
    record = writer.write_shard(sampledata.pair_samples(6, 96, fmt="raw"), tmp_path, "train", 1)
    tar_path, idx_path = tmp_path / record["name"], tmp_path / record["index_name"]
    text = idx_path.read_text()
    assert text.startswith("v1.2 6\n")
    with open(tar_path, "rb") as f:
        assert dali_index.parse_index(text) == samples.index_from_tar(f)
    # Byte-for-byte what DALI's own tool writes for the same tar.
    wds2idx = os.path.join(os.path.dirname(sys.executable), "wds2idx")
    if not os.path.exists(wds2idx):
        pytest.skip("DALI's wds2idx script is not installed beside this Python")
    subprocess.run([wds2idx, str(tar_path), str(tmp_path / "ref.idx")], check=True,
                   capture_output=True)
    assert (tmp_path / "ref.idx").read_text() == text


def test_long_keys_round_trip(tmp_path):
    key = schema.make_key("optimam", "1.2.826.0.1.3680043.9.3218." + "7" * 90, "MLO", "r010c004")
    image = np.full((96, 96), 1234, np.uint16)
    sample = schema.encode_pair(key, image, image, sampledata.pair_meta(96))
    record = writer.write_shard([sample], tmp_path, "test", 0)
    read = _read_tar(tmp_path / record["name"])
    assert list(read) == [key] and len(key) > 100
    with open(tmp_path / record["name"], "rb") as f:
        assert dali_index.parse_index((tmp_path / record["index_name"]).read_text()) == \
            samples.index_from_tar(f)


def test_tar_tool_lists_the_members(tmp_path):
    record = writer.write_shard(sampledata.pair_samples(3, 96), tmp_path, "train", 0)
    listing = subprocess.run(["tar", "-tf", str(tmp_path / record["name"])], check=True,
                             capture_output=True, text=True).stdout.split()
    assert listing == [f"pair_{i:06d}.{f}" for i in range(3) for f in ("json", "left.png", "right.png")]


def test_exception_from_the_sample_iterator_leaves_nothing(tmp_path):
    good = sampledata.pair_samples(4, 96)

    def failing():
        yield from good[:2]
        raise RuntimeError("source broke half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        writer.write_shard(failing(), tmp_path, "train", 0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad,match", [
    ({"__key__": "a.b", "json": b"{}"}, "invalid sample key"),
    ({"__key__": "k", "json": "text"}, "expected bytes"),
    ({"__key__": "k"}, "no fields"),
])
def test_bad_samples_are_rejected_and_leave_nothing(tmp_path, bad, match):
    with pytest.raises(schema.SchemaError, match=match):
        writer.write_shard(sampledata.pair_samples(1, 96) + [bad], tmp_path, "train", 0)
    assert os.listdir(tmp_path) == []


def test_duplicate_keys_and_empty_shards_are_rejected(tmp_path):
    sample = sampledata.pair_samples(1, 96)[0]
    with pytest.raises(schema.SchemaError, match="duplicate"):
        writer.write_shard([sample, sample], tmp_path, "train", 0)
    with pytest.raises(ValueError, match="no samples"):
        writer.write_shard([], tmp_path, "train", 0)
    with pytest.raises(ValueError, match="invalid split"):
        writer.write_shard([sample], tmp_path, "../x", 0)
    assert os.listdir(tmp_path) == []


def test_writer_killed_mid_shard_leaves_no_final_name(tmp_path):
    flag = tmp_path / "half-way"
    script = textwrap.dedent(f"""
        import pathlib, time
        from shards import sampledata, writer
        samples = sampledata.pair_samples(4, 96)
        def slow():
            yield from samples[:2]
            pathlib.Path({str(flag)!r}).touch()
            time.sleep(60)
            yield from samples[2:]
        writer.write_shard(slow(), {str(tmp_path / "out")!r}, "train", 0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        deadline = time.time() + 60
        while not flag.exists():
            assert proc.poll() is None, "writer process died before the flag"
            assert time.time() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    names = os.listdir(tmp_path / "out")
    assert "train-000000.tar" not in names and "train-000000.idx" not in names
    assert names and all(writer.is_temporary(n) for n in names)  # the killed temp file, hidden


def test_file_url_output(tmp_path):
    record = writer.write_shard(sampledata.pair_samples(2, 96), f"file://{tmp_path}", "val", 3)
    assert (tmp_path / "val-000003.tar").stat().st_size == record["bytes"]
    assert (tmp_path / "val-000003.idx").exists()


def test_write_index_false(tmp_path):
    record = writer.write_shard(sampledata.pair_samples(2, 96), tmp_path, "val", 0, write_index=False)
    assert record["index_name"] is None and os.listdir(tmp_path) == ["val-000000.tar"]
