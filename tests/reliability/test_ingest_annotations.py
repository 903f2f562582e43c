"""Annotations are never dropped or bent without a word: missing columns, bad and clipped boxes."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from ingest.adapters import load_exams
from ingest.adapters.boxes import check_box
from ingest.report import Report, summary

SIZE = (256, 192)
BOX = ("xmin", "ymin", "xmax", "ymax")


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    from ingest.synth import generate

    root = tmp_path_factory.mktemp("annotations")
    for layout in ("vindr", "optimam"):
        generate(layout=layout, patients=3, out=str(root / layout), seed=1, image_size=SIZE,
                 lesion_fraction=0.7, progress=False)
    return root


@pytest.fixture
def vindr(layouts, tmp_path):
    copy = tmp_path / "vindr"
    shutil.copytree(layouts / "vindr", copy)
    return copy


def _edit(path, edit):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = edit(frame)
    frame.to_csv(path, index=False)


def _boxed_rows(frame):
    return [i for i, v in enumerate(frame["xmin"]) if v.strip()]


def test_good_vindr_input_keeps_every_box(vindr):
    table = load_exams("vindr", vindr)
    frame = pd.read_csv(vindr / "finding_annotations.csv", dtype=str, keep_default_na=False)
    boxed = frame[frame["xmin"].str.strip() != ""]
    assert len(boxed) > 0
    assert sum(len(img.rois) for img in table.images) == len(boxed)
    assert not table.skipped and not table.adjusted


@pytest.mark.parametrize("csv,column", [("breast-level_annotations.csv", "laterality"),
                                        ("breast-level_annotations.csv", "view_position"),
                                        ("finding_annotations.csv", "xmin"),
                                        ("finding_annotations.csv", "ymax")])
def test_missing_column_names_file_and_column(vindr, csv, column):
    _edit(vindr / csv, lambda f: f.drop(columns=[column]))
    with pytest.raises(ValueError) as info:
        load_exams("vindr", vindr)
    message = str(info.value)
    assert csv in message and repr(column) in message
    assert "\n" not in message


@pytest.mark.parametrize("value,reason", [("abc", "bad box"), ("", "bad box"),
                                          ("nan", "bad box")])
def test_non_numeric_box_rejects_its_image_with_column_row_and_value(vindr, value, reason):
    path = vindr / "finding_annotations.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = _boxed_rows(frame)[0]
    image_id = frame.loc[row, "image_id"]
    frame.loc[row, "ymin"] = value
    frame.to_csv(path, index=False)
    table = load_exams("vindr", vindr)
    assert image_id not in {img.image_id for img in table.images}
    (skip,) = [s for s in table.skipped if image_id in s.item]
    assert skip.reason == reason
    assert f"line {row + 2}" in skip.detail and "ymin" in skip.detail
    if value:
        assert repr(value) in skip.detail


def test_inverted_and_empty_boxes_are_rejected(vindr):
    path = vindr / "finding_annotations.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    first, second = _boxed_rows(frame)[:2]
    frame.loc[first, ["xmin", "xmax"]] = [frame.loc[first, "xmax"], frame.loc[first, "xmin"]]
    frame.loc[second, "ymax"] = frame.loc[second, "ymin"]
    frame.to_csv(path, index=False)
    table = load_exams("vindr", vindr)
    reasons = {s.item.rsplit("/", 1)[-1].split(".")[0]: s for s in table.skipped}
    inverted = reasons[frame.loc[first, "image_id"]]
    empty = reasons[frame.loc[second, "image_id"]]
    assert inverted.reason == "inverted box" and f"line {first + 2}" in inverted.detail
    assert empty.reason == "empty box" and f"line {second + 2}" in empty.detail


def test_box_past_the_image_is_clipped_and_reported(vindr):
    path = vindr / "finding_annotations.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = _boxed_rows(frame)[0]
    image_id = frame.loc[row, "image_id"]
    frame.loc[row, "xmax"] = str(SIZE[1] + 50)
    frame.loc[row, "ymin"] = "-10"
    frame.to_csv(path, index=False)
    table = load_exams("vindr", vindr)
    (img,) = [i for i in table.images if i.image_id == image_id]
    (roi,) = img.rois
    assert roi.box[2] == SIZE[1] and roi.box[1] == 0.0
    (note,) = table.adjusted
    assert note.reason == "clipped box" and f"line {row + 2}" in note.detail

    rep = Report(params={})
    rep.exams(table)
    assert rep.data["adjusted"][0]["reason"] == "clipped box"
    assert "clipped box: 1" in summary(rep.finish())


def test_box_wholly_outside_the_image_is_rejected(vindr):
    path = vindr / "finding_annotations.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = _boxed_rows(frame)[0]
    frame.loc[row, ["xmin", "xmax"]] = [str(SIZE[1] + 10), str(SIZE[1] + 20)]
    frame.to_csv(path, index=False)
    table = load_exams("vindr", vindr)
    (skip,) = [s for s in table.skipped if frame.loc[row, "image_id"] in s.item]
    assert skip.reason == "box outside the image"


def test_rejections_reach_the_report_with_their_detail(vindr):
    path = vindr / "finding_annotations.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = _boxed_rows(frame)[0]
    frame.loc[row, "xmin"] = "12,5"
    frame.to_csv(path, index=False)
    rep = Report(params={})
    rep.exams(load_exams("vindr", vindr))
    (entry,) = rep.data["rejected"]
    assert entry["reason"] == "bad box" and "xmin='12,5'" in entry["detail"]
    assert rep.data["images"]["reasons"] == {"bad box": 1}


# ------------------------------------------------------------------ OPTIMAM marks


@pytest.fixture
def optimam(layouts, tmp_path):
    copy = tmp_path / "optimam"
    shutil.copytree(layouts / "optimam", copy)
    return copy


def _first_mark(root):
    for db_path in sorted(root.glob("data/*/imagedb_*.json")):
        db = json.loads(db_path.read_text())
        stack = [db]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if "X1" in node:
                    return db_path, db, node
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    raise AssertionError("the generated OPTIMAM set has no mark")


def test_good_optimam_input_keeps_every_mark(optimam):
    table = load_exams("optimam", optimam)
    assert sum(len(img.rois) for img in table.images) > 0
    assert not table.skipped and not table.adjusted


@pytest.mark.parametrize("edit,reason,word", [
    (lambda m: m.update(X1="abc"), "bad box", "X1='abc'"),
    (lambda m: m.pop("Y2"), "bad box", "Y2 is empty"),
    (lambda m: m.update(X1=5000, X2=5010), "box outside the image", "outside"),
])
def test_bad_optimam_mark_rejects_its_image(optimam, edit, reason, word):
    db_path, db, mark = _first_mark(optimam)
    edit(mark)
    db_path.write_text(json.dumps(db))
    table = load_exams("optimam", optimam)
    (skip,) = table.skipped
    assert skip.reason == reason and word in skip.detail and db_path.name in skip.detail


def test_optimam_mark_past_the_image_is_clipped_and_reported(optimam):
    db_path, db, mark = _first_mark(optimam)
    mark["X2"] = 5000
    db_path.write_text(json.dumps(db))
    table = load_exams("optimam", optimam)
    assert not table.skipped
    (note,) = table.adjusted
    assert note.reason == "clipped box" and db_path.name in note.detail


def test_check_box_keeps_a_good_box_exactly():
    cells = {"xmin": "1.5", "ymin": "2", "xmax": "10", "ymax": "20"}
    assert check_box(cells, BOX, "t", (100, 100)).box == (1.5, 2.0, 10.0, 20.0)
    assert check_box({k: "" for k in BOX}, BOX, "t").box is None


def test_missing_column_stops_the_build_in_one_line_and_keeps_the_old_set(vindr, tmp_path, capsys):
    from ingest.cli import main
    from shards.manifest import build_manifest, write_manifest

    out = tmp_path / "set"
    out.mkdir()
    write_manifest(str(out), build_manifest([], {"size": 1}))
    before = (out / "manifest.json").read_bytes()
    _edit(vindr / "finding_annotations.csv", lambda f: f.drop(columns=["xmin"]))
    rc = main(["build-shards", "--dataset", "vindr", "--root", str(vindr), "--out", str(out),
               "--cache-dir", str(tmp_path / "cache"), "--size", "64", "--out-shape", "192x160",
               "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "finding_annotations.csv" in err and "'xmin'" in err
    assert (out / "manifest.json").read_bytes() == before


def test_dicom_manifest_values_are_named_when_they_reject(tmp_path):
    from ingest.adapters.dicom_folder import load
    from ingest.synth import generate

    generate(layout="optimam", patients=1, out=str(tmp_path / "gen"), seed=4, image_size=(128, 96),
             progress=False, studies_per_patient=(1, 1))
    root = tmp_path / "gen" / "images"
    first = sorted(root.rglob("*.dcm"))[0]
    csv = tmp_path / "m.csv"
    csv.write_text(f"path,laterality\n{first.relative_to(root)},X\n")
    table = load(root, manifest=csv)
    (skip,) = table.skipped
    assert skip.reason == "missing laterality" and "laterality='X'" in skip.detail
    assert str(csv) in skip.detail


def test_without_height_and_width_the_header_bounds_the_boxes(vindr):
    _edit(vindr / "breast-level_annotations.csv", lambda f: f.drop(columns=["height", "width"]))
    path = vindr / "finding_annotations.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = _boxed_rows(frame)[0]
    frame.loc[row, "xmax"] = str(SIZE[1] + 50)
    frame.to_csv(path, index=False)
    table = load_exams("vindr", vindr)
    (note,) = table.adjusted
    assert note.reason == "clipped box" and f"{SIZE[0]}x{SIZE[1]} image" in note.detail
