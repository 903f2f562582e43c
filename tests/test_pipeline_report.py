"""report.json: counts add up and every rejection names its item and reason."""
from __future__ import annotations

import json
import shutil

import pytest

from ingest.config import BuildConfig
from ingest.pipeline import build_shards


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    """A generated DICOM folder with one garbage file, one truncated file, one lone image."""
    import pydicom

    from ingest.synth import generate

    tmp = tmp_path_factory.mktemp("report")
    generate(layout="optimam", patients=2, out=str(tmp / "gen"), seed=2, image_size=(256, 192),
             progress=False, studies_per_patient=(1, 1))
    folder = tmp / "dicoms"
    shutil.copytree(tmp / "gen" / "images", folder)
    files = sorted(folder.rglob("*.dcm"))
    by_key = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_key[(ds.PatientID, ds.ViewPosition, ds.ImageLaterality)] = f
    keys = sorted(by_key)
    garbage = by_key[keys[0]]                       # unreadable header: adapter skip
    garbage.write_bytes(b"\x00" * 64)
    truncated = by_key[keys[2]]                     # header fine, pixels cut: pair rejected
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    lone = by_key[keys[4]]                          # partner deleted: missing contralateral
    partner = keys[4][:2] + ("R" if keys[4][2] == "L" else "L",)
    by_key[partner].unlink()
    return {"folder": folder, "tmp": tmp, "files": len(files), "garbage": garbage,
            "truncated": truncated, "lone": lone}


def _config(damaged, name, **kw):
    tmp = damaged["tmp"]
    return BuildConfig(dataset="dicom", root=str(damaged["folder"]), out=str(tmp / name),
                       cache_dir=str(tmp / "cache"), size=64, out_shape=(192, 160),
                       shard_size=8, workers=1, progress=False, **kw)


def test_counts_add_up_with_reasons(damaged):
    report = build_shards(_config(damaged, "out"))
    with open(damaged["tmp"] / "out" / "report.json") as f:
        assert json.load(f)["images"] == report["images"]
    images = report["images"]
    assert images["read"] == damaged["files"] - 1          # one file was deleted
    assert images["read"] == images["used"] + images["rejected"]
    assert report["counts_add_up"] is True
    # The garbage file's partner is left without a contralateral image too.
    assert images["reasons"] == {"unreadable": 3, "missing contralateral image": 2}
    rejected = {r["item"]: r for r in report["rejected"]}
    assert rejected[str(damaged["garbage"])]["stage"] == "exams"
    assert rejected[str(damaged["truncated"])]["stage"] == "register"
    assert rejected[str(damaged["truncated"])]["images"] == 2
    assert rejected[str(damaged["lone"])]["reason"] == "missing contralateral image"
    pairs = report["pairs"]
    assert pairs["formed"] == pairs["used"] + pairs["rejected"]
    assert pairs["used"] * 2 == images["used"] > 0
    tiles = report["tiles"]
    assert tiles["total"] == tiles["kept"] + sum(tiles["dropped"].values())
    assert report["samples"]["total"] == tiles["kept"]
    assert set(report["seconds"]) >= {"exams", "pairs", "register", "tile", "pack", "manifest", "total"}
    assert set(report["task_seconds"]) >= {"decode", "normalise", "register", "tile", "encode", "write"}
    # CPU seconds per stage alongside the wall seconds; registering costs CPU, not just waiting.
    assert set(report["task_cpu_seconds"]) == set(report["task_seconds"])
    assert report["task_cpu_seconds"]["register"] > 0


def test_quality_rejections_carry_their_figures(damaged):
    report = build_shards(_config(damaged, "strict", quality={"dice_after": 1.01}))
    assert report["pairs"]["registered"] == 0          # the figures come from the cache
    assert report["pairs"]["used"] == 0
    quality = [r for r in report["rejected"] if r["reason"] == "quality below threshold"]
    assert len(quality) == report["pairs"]["from_cache"] > 0
    assert all("dice_after" in r["figures"] and "dice_after" in r["detail"] for r in quality)
    assert report["images"]["read"] == report["images"]["rejected"]
    assert report["samples"]["total"] == 0
