"""The `ingest build-shards` and `ingest build-downstream` commands, end to end on small data."""
from __future__ import annotations

import json

import pytest
import webdataset as wds

from ingest.cli import main
from shards.manifest import read_manifest
from shards.schema import decode_pair, decode_patch

SMALL = ["--patients", "2", "--image-size", "384x288", "--out-shape", "192x160",
         "--workers", "1", "--no-progress"]


def samples(out):
    for name in sorted(p.name for p in out.glob("*.tar")):
        yield from wds.WebDataset(str(out / name), shardshuffle=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_build_shards_synthetic_96(tmp_path, cache, capsys):
    out = tmp_path / "s96"
    assert main(["build-shards", "--dataset", "synthetic", "--size", "96", "--out", str(out),
                 "--cache-dir", str(cache), *SMALL]) == 0
    printed = capsys.readouterr().out
    assert "pairs:" in printed and "samples:" in printed
    man = read_manifest(str(out))
    report = json.loads((out / "report.json").read_text())
    assert man["totals"]["samples"] == report["samples"]["total"] > 0
    assert man["params"]["size"] == 96 and man["sample_kind"] == "pair"
    n = 0
    for sample in samples(out):
        pair = decode_pair(sample)
        n += 1
        assert pair.left.shape == pair.right.shape == (96, 96)
        assert pair.meta["dataset"] == "synthetic" and pair.meta["view"] in ("CC", "MLO")
        assert "." not in pair.key
        assert pair.meta["background"]["left"] <= 0.5 and pair.meta["background"]["right"] <= 0.5
    assert n == man["totals"]["samples"]
    assert all((out / s["index_name"]).exists() for sp in man["splits"].values() for s in sp["shards"])


def test_build_shards_synthetic_256_raw(tmp_path, cache):
    out = tmp_path / "s256"
    args = ["build-shards", "--dataset", "synthetic", "--size", "256", "--out", str(out),
            "--cache-dir", str(cache), "--format", "raw", *SMALL]
    args[args.index("192x160")] = "512x384"
    args[args.index("384x288")] = "512x384"
    assert main(args) == 0
    man = read_manifest(str(out))
    assert man["params"]["size"] == 256 and man["totals"]["samples"] > 0
    for sample in samples(out):
        assert "left.u16" in sample
        assert decode_pair(sample).left.shape == (256, 256)


@pytest.mark.parametrize("task", ["abnormal", "birads", "outcome"])
def test_build_downstream(tmp_path, cache, task):
    out = tmp_path / task
    # lesion-rich synthetic data: the 2-patient default may hold no lesion at all
    args = ["build-downstream", "--dataset", "synthetic", "--task", task, "--size", "64",
            "--out", str(out), "--cache-dir", str(cache), *SMALL]
    args[args.index("--patients") + 1] = "3"
    assert main(args) == 0
    man = read_manifest(str(out))
    assert man["sample_kind"] == "patch" and man["params"]["task"] == task
    labels = set()
    for sample in samples(out):
        patch = decode_patch(sample)
        assert patch.image.shape == (64, 64) and patch.meta["task"] == task
        labels.add(patch.meta["label"])
    report = json.loads((out / "report.json").read_text())
    assert report["samples"]["total"] == man["totals"]["samples"] == report["patches"]["found"]
    if man["totals"]["samples"]:
        assert 0 in labels and len(labels) >= 2     # normal patches and abnormal ones


def _split_counts(man) -> dict:
    return {name: sum(s["samples"] for s in sp["shards"]) for name, sp in man["splits"].items()}


def test_split_shares_are_chosen_and_recorded(tmp_path, cache):
    """--splits 1:0:1: no val split at all, train and test both filled, the shares recorded."""
    out = tmp_path / "pairs"
    assert main(["build-shards", "--dataset", "synthetic", "--size", "96", "--out", str(out),
                 "--cache-dir", str(cache), "--splits", "1:0:1", *SMALL]) == 0
    man = read_manifest(str(out))
    assert man["params"]["splits"] == [1, 0, 1]
    counts = _split_counts(man)
    assert counts.get("val", 0) == 0 and counts["train"] > 0 and counts["test"] > 0
    down = tmp_path / "down"
    args = ["build-downstream", "--dataset", "synthetic", "--task", "abnormal", "--size", "64",
            "--out", str(down), "--cache-dir", str(cache), "--splits", "1:0:1", *SMALL]
    args[args.index("--patients") + 1] = "3"
    assert main(args) == 0
    man = read_manifest(str(down))
    assert man["params"]["splits"] == [1, 0, 1] and _split_counts(man).get("val", 0) == 0


@pytest.mark.parametrize("args, message", [
    (["build-shards", "--dataset", "vindr", "--out", "X"], "needs --root"),
    (["build-shards", "--dataset", "synthetic", "--root", ".", "--out", "X"], "--root is for"),
    (["build-shards", "--out", "X", "--size", "512", "--out-shape", "256x256"], "does not fit"),
    (["build-shards", "--out", "X", "--out-shape", "big"], "HEIGHTxWIDTH"),
    (["build-downstream", "--out", "X"], "--task"),
    (["build-shards", "--out", "X", "--splits", "8:1"], "TRAIN:VAL:TEST"),
    (["build-shards", "--out", "X", "--splits", "0:1:1"], "train above 0"),
])
def test_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main(args)
        raise SystemExit(code)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
