"""build-shards is deterministic: any worker count, any interruption, one registration per pair."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.config import BuildConfig
from ingest.pipeline import build_shards
from shards.manifest import content_digest, read_manifest

OUT_SHAPE = (192, 160)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from ingest.synth import generate

    root = tmp_path_factory.mktemp("vindr") / "data"
    generate(layout="vindr", patients=4, out=str(root), seed=5, image_size=(384, 288),
             lesion_fraction=0.5, progress=False)
    return root


def config(root, out, cache, **kw) -> BuildConfig:
    base = dict(dataset="vindr", root=str(root), out=str(out), cache_dir=str(cache), size=64,
                out_shape=OUT_SHAPE, shard_size=16, workers=1, progress=False)
    base.update(kw)
    return BuildConfig(**base)


def shard_hashes(out) -> list[tuple[str, str]]:
    man = read_manifest(str(out))
    return [(s["name"], s["sha256"]) for split in man["splits"].values() for s in split["shards"]]


@pytest.fixture(scope="module")
def client():
    """One single-worker local cluster for the tests that are not about worker counts."""
    from ingest.pipeline import dask_client

    with dask_client(workers=1, quiet=True) as c:
        yield c


@pytest.fixture(scope="module")
def reference(dataset, client, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    report = build_shards(config(dataset, tmp / "out", tmp / "cache", workers=1), client=client)
    return tmp, report


def test_one_and_two_workers_give_identical_shards(dataset, reference, tmp_path):
    ref_dir, ref_report = reference
    report = build_shards(config(dataset, tmp_path / "out", tmp_path / "cache", workers=2))
    assert report["pairs"] == ref_report["pairs"], (report["rejected"], ref_report["rejected"])
    assert report["pairs"]["registered"] > 0
    assert report["samples"]["total"] == ref_report["samples"]["total"] > 16   # several shards
    assert shard_hashes(tmp_path / "out") == shard_hashes(ref_dir / "out")
    assert content_digest(read_manifest(str(tmp_path / "out"))) == \
        content_digest(read_manifest(str(ref_dir / "out")))
    # Every sample of the dataset's splits is a patient-level split: no patient in two splits.
    import webdataset as wds

    from shards.schema import decode_pair

    split_of = {}
    for tar in sorted((tmp_path / "out").glob("*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            meta = decode_pair(sample).meta
            assert split_of.setdefault(meta["patient"], meta["split"]) == meta["split"]
            assert tar.name.startswith(meta["split"])


def test_sizes_share_one_registration(dataset, reference, client):
    ref_dir, ref_report = reference
    entries = sorted(p.name for p in (ref_dir / "cache" / "pairs").rglob("*") if p.parent.parent.name == "pairs")
    report = build_shards(config(dataset, ref_dir / "out96", ref_dir / "cache", size=96),
                          client=client)
    assert report["pairs"]["registered"] == 0
    assert report["pairs"]["from_cache"] == ref_report["pairs"]["formed"]
    again = sorted(p.name for p in (ref_dir / "cache" / "pairs").rglob("*") if p.parent.parent.name == "pairs")
    assert again == entries
    assert read_manifest(str(ref_dir / "out96"))["params"]["size"] == 96


def test_rerun_into_same_folder_is_identical(dataset, reference, client):
    ref_dir, _ = reference
    before = read_manifest(str(ref_dir / "out"))
    report = build_shards(config(dataset, ref_dir / "out", ref_dir / "cache"), client=client)
    assert report["pairs"]["registered"] == 0
    assert content_digest(read_manifest(str(ref_dir / "out"))) == content_digest(before)


def test_killed_run_resumes_to_the_same_manifest(dataset, reference, client, tmp_path):
    ref_dir, ref_report = reference
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "ingest.cli", "build-shards", "--dataset", "vindr", "--root",
           str(dataset), "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "--size", "64",
           "--out-shape", "x".join(map(str, OUT_SHAPE)), "--shard-size", "16", "--workers", "1",
           "--no-progress"]
    log = open(tmp_path / "killed-run.log", "wb")
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parents[1])
    pairs_dir = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            found = [p for p in cache.glob("pairs/*/*/zarr.json")
                     if not p.parent.name.startswith(".")]    # complete entries only
            if len(found) >= 2:
                pairs_dir = found[0].parent.parent
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
    output = (tmp_path / "killed-run.log").read_text(errors="replace")[-2000:]
    assert pairs_dir is not None, f"the run ended before two pairs were cached:\n{output}"
    cached = len([p for p in pairs_dir.iterdir() if not p.name.startswith(".")])
    assert cached < ref_report["pairs"]["formed"], "killed too late to test a resume"
    assert not (tmp_path / "out" / "manifest.json").exists()

    report = build_shards(config(dataset, tmp_path / "out", cache), client=client)
    assert report["pairs"]["from_cache"] >= 2, report["pairs"]
    assert report["pairs"]["from_cache"] + report["pairs"]["registered"] == \
        ref_report["pairs"]["formed"], report["pairs"]
    leftovers = [p.name for p in pairs_dir.iterdir() if p.name.startswith(".tmp-")]
    assert not leftovers, leftovers
    assert shard_hashes(tmp_path / "out") == shard_hashes(ref_dir / "out")
