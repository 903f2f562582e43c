"""`ingest qc` and `build-shards --qc`: the contact sheet of a build, rejected and worst first."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ingest import qc
from ingest.cache import PairCache
from ingest.cli import main
from ingest.register import alignment_score

SMALL = ["--patients", "2", "--image-size", "384x288", "--out-shape", "192x160",
         "--workers", "1", "--no-progress"]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A small build whose quality floor rejects some pairs, with its sheet."""
    out = tmp_path_factory.mktemp("qc") / "s96"
    cache = tmp_path_factory.mktemp("qc-cache")
    assert main(["build-shards", "--dataset", "synthetic", "--size", "96", "--out", str(out),
                 "--cache-dir", str(cache), "--min-dice", "0.97", "--qc", *SMALL]) == 0
    return out


def test_sheet_rows_rejected_first_then_worst(build):
    report = json.loads((build / "report.json").read_text())
    assert report["pairs"]["rejected"] > 0 and report["pairs"]["used"] > 0
    assert set(report["entries"]) and sum(report["pairs"]["alignment"].values()) == \
        report["pairs"]["formed"]
    cache = PairCache.at(report["cache"]["root"])
    rows = qc.rows_of(report, cache)
    assert len(rows) == report["pairs"]["formed"]
    status = [r["status"] for r in rows]
    n_rej = report["pairs"]["rejected"]
    assert status == ["rejected"] * n_rej + ["used"] * (len(rows) - n_rej)
    scores = []
    for r in rows[n_rej:]:
        q = cache.record(r["entry"]).quality
        scores.append(alignment_score(q["dice_after"], q["tissue_after"]))
    assert scores == sorted(scores)


def test_sheet_drawn(build, tmp_path, capsys):
    sheet = build / qc.SHEET_NAME
    assert sheet.is_file()                          # written by build-shards --qc
    report = json.loads((build / "report.json").read_text())
    img = np.asarray(Image.open(sheet).convert("RGB"))
    rows = report["pairs"]["formed"]
    assert img.shape[0] == 24 + rows * (qc.THUMB_HEIGHT + qc.GAP)
    # the first row shows the pair: grey sides, and the masks' overlap in yellow
    row = img[24:24 + qc.THUMB_HEIGHT].astype(int)
    grey = (row[..., 0] == row[..., 1]) & (row[..., 1] == row[..., 2]) & (row[..., 0] > 100)
    yellow = (row[..., 0] > 200) & (row[..., 1] > 200) & (row[..., 2] < 50)
    assert grey.sum() > 1000 and yellow.sum() > 1000
    small = tmp_path / "three.png"
    assert main(["qc", "--out", str(build), "--sheet", str(small), "--rows", "3"]) == 0
    assert str(small) in capsys.readouterr().out
    assert np.asarray(Image.open(small)).shape[0] == 24 + 3 * (qc.THUMB_HEIGHT + qc.GAP)


def test_qc_needs_a_build(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(["qc", "--out", str(tmp_path)]))
    assert exc.value.code == 2 and "report.json" in capsys.readouterr().err
