"""The `shards` command on a tiny local shard set: verify, ls, stats, argument errors."""
import os

import numpy as np
import pytest
from PIL import Image

from shards import cli, manifest, sampledata, schema, writer


@pytest.fixture
def shard_set(tmp_path):
    root = tmp_path / "set"
    records = []
    for split, index, count in [("train", 0, 6), ("train", 1, 5), ("val", 0, 3)]:
        samples = sampledata.pair_samples(count, 96, "png", seed=index, split=split, start=10 * index)
        records.append(writer.write_shard(samples, root, split, index))
    patch = schema.encode_patch("patch-1", sampledata.tissue_patch(np.random.default_rng(0), 96),
                                {"size": 96, "bits": 12, "task": "abnormal", "label": 1,
                                 "label_name": "abnormal", "split": "test"})
    records.append(writer.write_shard([patch], root, "test", 0))
    manifest.write_manifest(root, manifest.build_manifest(records, {"size": 96}))
    return root


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_verify_passes_on_a_good_set(shard_set, capsys):
    (shard_set / ".train-000002.tar.tmp-123-abcdef01").write_bytes(b"partial")  # a killed writer
    assert cli.main(["verify", str(shard_set), "--sample-fraction", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "OK: 4 shards, 15 samples" in out and "15 samples decoded" in out
    assert "note    .train-000002.tar.tmp-123-abcdef01: temporary file" in out


def test_verify_catches_a_flipped_byte(shard_set, capsys):
    size = (shard_set / "train-000001.tar").stat().st_size
    _flip_byte(shard_set / "train-000001.tar", size // 2)
    assert cli.main(["verify", str(shard_set), "--sample-fraction", "0"]) == 1
    out = capsys.readouterr().out
    assert "PROBLEM train-000001.tar: sha256" in out and "train-000000.tar" not in out


def test_verify_catches_a_flipped_byte_in_metadata(shard_set, capsys):
    # Flip a byte inside the first json member ("area" becomes "`rea"): checksum and decoding complain.
    _flip_byte(shard_set / "val-000000.tar", 512 + 2)
    assert cli.main(["verify", str(shard_set), "--sample-fraction", "1"]) == 1
    out = capsys.readouterr().out
    assert "val-000000.tar: sha256" in out and "PROBLEM val-000000.tar: pair_000000: metadata lacks area" in out


def test_verify_catches_a_truncated_tar(shard_set, capsys):
    path = shard_set / "train-000000.tar"
    os.truncate(path, path.stat().st_size // 3)
    assert cli.main(["verify", str(shard_set)]) == 1
    out = capsys.readouterr().out
    assert "train-000000.tar: unreadable tar" in out
    assert "manifest says 6" in out  # sample count against the manifest


def test_verify_catches_a_missing_shard_and_a_stale_index(shard_set, capsys):
    os.remove(shard_set / "val-000000.tar")
    idx = shard_set / "train-000000.idx"
    idx.write_text(idx.read_text().replace(" 512 ", " 1024 ", 1))
    assert cli.main(["verify", str(shard_set)]) == 1
    out = capsys.readouterr().out
    assert "val-000000.tar: cannot open" in out
    assert "train-000000.idx: does not match" in out


def test_ls_lists_shards(shard_set, capsys):
    assert cli.main(["ls", str(shard_set)]) == 0
    out = capsys.readouterr().out
    sha = manifest.read_manifest(shard_set)["splits"]["val"]["shards"][0]["sha256"]
    assert f"val-000000.tar" in out and sha[:12] in out
    assert "train: 2 shards, 11 samples" in out and "total: 4 shards, 15 samples" in out


def test_stats_prints_distributions_and_writes_a_contact_sheet(shard_set, tmp_path, capsys):
    preview = tmp_path / "sheet.png"
    assert cli.main(["stats", str(shard_set), "--preview", str(preview), "--preview-pairs", "6"]) == 0
    out = capsys.readouterr().out
    assert "train: 2 shards, 11 samples" in out and "bytes/sample" in out
    assert "area" in out and "q50=" in out and "background" in out
    assert "labels: abnormal=1" in out
    with Image.open(preview) as image:
        assert image.mode == "L" and image.size[0] > 256


def test_bad_arguments_exit_2(shard_set, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["verify", str(shard_set), "--sample-fraction", "2"])
    assert exc.value.code == 2
    assert cli.main(["ls", str(shard_set / "nowhere")]) == 2
    assert "no manifest" in capsys.readouterr().err
    assert cli.main(["upload", str(shard_set), "/not/s3"]) == 2
