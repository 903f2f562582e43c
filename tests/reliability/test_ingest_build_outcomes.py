"""`ingest build-shards` on bad input: reported, never fatal for one exam, never destructive.

Identifier collisions, `--strict`, an empty result, a `--manifest` without its `path` column,
an unwritable `--out`, files the build did not write, temporary files of dead writers.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from contextlib import contextmanager

import pytest

from ingest import pipeline
from ingest.cli import main
from shards import verify
from shards.manifest import build_manifest, content_digest, read_manifest, write_manifest

FLAGS = ["--dataset", "dicom", "--size", "64", "--out-shape", "192x160", "--shard-size", "50",
         "--workers", "1", "--no-progress"]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           silence_logs=logging.ERROR, dashboard_address="127.0.0.1:0")
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(autouse=True)
def shared_cluster(client, monkeypatch):
    """Every build in this module runs on one cluster (starting one per build costs seconds)."""

    @contextmanager
    def reuse(*args, **kwargs):
        yield client

    monkeypatch.setattr(pipeline, "dask_client", reuse)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three generated patients as a DICOM folder, and a manifest CSV that gives two of them
    the ids ``P.1`` and ``P-1`` (one pair id once dots become dashes) and one study id."""
    import pydicom

    from ingest.synth import generate

    tmp = tmp_path_factory.mktemp("outcomes")
    generate(layout="optimam", patients=3, out=str(tmp / "gen"), seed=3, image_size=(256, 192),
             progress=False, studies_per_patient=(1, 1))
    root = tmp / "gen" / "images"
    files = sorted(root.rglob("*.dcm"))
    patients = sorted({pydicom.dcmread(f, stop_before_pixels=True).PatientID for f in files})
    names = {patients[0]: "P.1", patients[1]: "P-1"}
    lines = ["path,patient,study"]
    for f in files:
        pid = pydicom.dcmread(f, stop_before_pixels=True).PatientID
        if pid in names:
            lines.append(f"{f.relative_to(root)},{names[pid]},S1")
    csv = tmp / "ids.csv"
    csv.write_text("\n".join(lines) + "\n")
    bad_csv = tmp / "no-path.csv"
    bad_csv.write_text("file,patient\n" + "\n".join(l.split(",", 1)[1] for l in lines[1:]) + "\n")
    return {"root": root, "csv": csv, "bad_csv": bad_csv, "tmp": tmp, "cache": tmp / "cache"}


def _args(data, out, *extra):
    return ["build-shards", *FLAGS, "--root", str(data["root"]), "--cache-dir", str(data["cache"]),
            "--out", str(out), *extra]


@pytest.fixture(scope="module")
def built(data, client):
    """A first build with the colliding ids: one exam per colliding pair id is kept."""
    out = data["tmp"] / "set"
    with pytest.MonkeyPatch.context() as mp:
        @contextmanager
        def reuse(*args, **kwargs):
            yield client

        mp.setattr(pipeline, "dask_client", reuse)
        rc = main(_args(data, out, "--manifest", str(data["csv"])))
    return {"rc": rc, "out": out, "report": json.loads((out / "report.json").read_text())}


def test_pair_id_collision_is_reported_per_exam_not_fatal(built):
    assert built["rc"] == 0
    report = built["report"]
    collisions = [r for r in report["rejected"] if r["reason"] == "pair id collision"]
    # The second patient's CC and MLO exams, both images of each.
    assert len(collisions) == 4
    assert all("P.1" in r["detail"] and "P-1" in r["detail"] for r in collisions)
    assert report["pairs"]["used"] == 4 and report["counts_add_up"]
    assert verify.verify(str(built["out"])).ok


def test_strict_turns_a_rejection_into_exit_1_after_the_report(data, built, tmp_path, capsys):
    out = tmp_path / "strict"
    assert main(_args(data, out, "--manifest", str(data["csv"]), "--strict")) == 1
    err = capsys.readouterr().err
    assert "--strict" in err and "pair id collision: 4" in err and len(err.strip().splitlines()) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["images"]["rejected"] == 4
    assert verify.verify(str(out)).ok               # the shards are written all the same


def test_strict_with_nothing_rejected_is_exit_0(data, built, tmp_path):
    assert main(_args(data, tmp_path / "clean", "--strict")) == 0


def test_manifest_without_path_column_is_one_line_and_keeps_the_old_set(data, built, capsys):
    out = built["out"]
    before = (out / "manifest.json").read_bytes()
    capsys.readouterr()
    assert main(_args(data, out, "--manifest", str(data["bad_csv"]), "--size", "32")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'path'" in err and str(data["bad_csv"]) in err
    assert (out / "manifest.json").read_bytes() == before
    assert verify.verify(str(out)).ok


def test_empty_result_is_exit_1_with_the_summary_and_no_manifest(data, built, tmp_path, capsys):
    out = tmp_path / "empty"
    capsys.readouterr()
    # No pair can reach a correlation above 1: every pair is rejected.
    rc = main(_args(data, out, "--min-ncc", "1.5"))
    printed = capsys.readouterr()
    assert rc == 1
    assert "no samples" in printed.out and "no samples" in printed.err
    assert "images:" in printed.out                  # the report's summary
    assert not (out / "manifest.json").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["empty"] is True and report["samples"]["total"] == 0
    assert report["images"]["reasons"]["quality below threshold"] > 0


def test_empty_result_leaves_the_previous_set_whole(data, built):
    out = built["out"]
    before = read_manifest(str(out))
    assert main(_args(data, out, "--manifest", str(data["csv"]), "--min-ncc", "1.5")) == 1
    assert content_digest(read_manifest(str(out))) == content_digest(before)
    assert verify.verify(str(out)).ok


def test_verify_fails_a_set_with_no_samples(tmp_path):
    write_manifest(str(tmp_path), build_manifest([], {"size": 64}))
    report = verify.verify(str(tmp_path))
    assert not report.ok and "no samples" in report.problems[0]


def test_a_build_removes_only_files_its_own_manifest_named(data, built, tmp_path):
    out = tmp_path / "own"
    # One sample per shard first, so that the next build names fewer shards.
    assert main(_args(data, out, "--manifest", str(data["csv"]), "--shard-size", "1")) == 0
    foreign = ["train-000777.tar", "train-000777.idx", "val-000123.tar", "notes-000001.tar"]
    for name in foreign:
        (out / name).write_bytes(b"not ours")
    old = {r["name"] for sp in read_manifest(str(out))["splits"].values() for r in sp["shards"]}
    assert main(_args(data, out, "--manifest", str(data["csv"]), "--shard-size", "1000")) == 0
    new = {r["name"] for sp in read_manifest(str(out))["splits"].values() for r in sp["shards"]}
    assert old - new, "the rebuild should leave some old shards unnamed"
    for name in foreign:
        assert (out / name).read_bytes() == b"not ours"
    for name in old - new:
        assert not (out / name).exists() and not (out / (name[:-4] + ".idx")).exists()
    assert verify.verify(str(out)).ok


def test_a_build_killed_after_retiring_the_manifest_still_cleans_up(data, built, tmp_path):
    from ingest import packing

    out = tmp_path / "killed"
    assert main(_args(data, out, "--manifest", str(data["csv"]), "--shard-size", "1")) == 0
    old = packing.manifest_files(out)
    # A build with other parameters retired the manifest, then died before writing its own.
    assert packing.retire_old_manifest(out, {"other": "parameters"})
    assert not (out / "manifest.json").exists() and packing.manifest_files(out) == old
    (out / "test-000999.tar").write_bytes(b"not ours")
    assert main(_args(data, out, "--manifest", str(data["csv"]), "--shard-size", "1000")) == 0
    new = packing.manifest_files(out)
    assert old - new and not any((out / name).exists() for name in old - new)
    assert (out / "test-000999.tar").exists() and not (out / packing.RETIRED_NAME).exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_dead_writers_are_cleaned_at_the_next_run(data, built, tmp_path):
    import shutil

    out = tmp_path / "tmps"
    shutil.copytree(built["out"], out)
    dead = f".train-000000.tar.tmp-{_dead_pid()}-0123abcd"
    live = f".train-000001.tar.tmp-{os.getpid()}-0123abcd"
    report_tmp = f".report.json.tmp-{_dead_pid()}-89abcdef"
    for name in (dead, live, report_tmp):
        (out / name).write_bytes(b"half")
    assert main(_args(data, out, "--manifest", str(data["csv"]))) == 0
    assert not (out / dead).exists() and not (out / report_tmp).exists()
    assert (out / live).exists()                     # its writer still runs


def test_synthetic_generator_temporaries_are_cleaned(tmp_path, monkeypatch):
    import ingest.synth
    from ingest.adapters import synthetic

    cache = tmp_path / "cache"
    cache.mkdir()
    dead = cache / f".synthetic-0123456789ab.tmp-{_dead_pid()}-0123abcd"
    live = cache / f".synthetic-0123456789ab.tmp-{os.getpid()}-0123abcd"
    for folder in (dead, live):
        (folder / "images").mkdir(parents=True)

    def fake_generate(out, **kwargs):
        os.makedirs(out)
        open(os.path.join(out, "breast-level_annotations.csv"), "w").close()

    monkeypatch.setattr(ingest.synth, "generate", fake_generate)
    synthetic.ensure_generated(cache, patients=1, image_size=(64, 64))
    assert not dead.exists() and live.exists()


def test_unwritable_out_fails_before_any_work(data, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the exams were read before --out was checked")

    monkeypatch.setattr(pipeline, "load_exams", no_work)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(_args(data, blocker / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "cannot write" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="permissions do not bind root")
def test_existing_read_only_out_fails_before_any_work(data, tmp_path, monkeypatch, capsys):
    def no_work(*args, **kwargs):
        raise AssertionError("the exams were read before --out was checked")

    monkeypatch.setattr(pipeline, "load_exams", no_work)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        rc = main(_args(data, out))
    finally:
        out.chmod(0o755)
    assert rc == 2 and "cannot write" in capsys.readouterr().err


def test_shards_verify_command_fails_an_empty_set(tmp_path, capsys):
    from shards.cli import main as shards_main

    write_manifest(str(tmp_path), build_manifest([], {"size": 64}))
    assert shards_main(["verify", str(tmp_path)]) == 1
    printed = capsys.readouterr()
    assert "no samples" in printed.out + printed.err
