"""`--dataset dicom` on folders whose side and view sit only in one place each: the standard
tags, the tags real files misuse, the file name or the folder name; each image its own study
where real archives do that."""
from __future__ import annotations

import copy
import json
import shutil

import pydicom
import pytest

from ingest.adapters import dicom_exams, load_exams
from ingest.pairing import pair_exams
from ingest.report import Report

PLACES = ("ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence",
          "PatientOrientation", "SeriesDescription", "StudyDescription", "ProtocolName")
SIDE_WORD = {"L": "LEFT", "R": "RIGHT"}


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    """One generated patient's four images (one study): [(dataset, pixels-bearing path)]."""
    from ingest.synth import generate

    root = tmp_path_factory.mktemp("ids") / "optimam"
    generate(layout="optimam", patients=1, out=str(root), seed=5, image_size=(128, 96),
             progress=False)
    files = sorted((root / "images").rglob("*.dcm"))
    by_study = {}
    for f in files:
        by_study.setdefault(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID, []).append(f)
    four = next(v for v in by_study.values() if len(v) == 4)
    return [pydicom.dcmread(f) for f in four]


def _bare(ds):
    """A copy of ``ds`` with no tag that names its side or view."""
    ds = copy.deepcopy(ds)
    for name in PLACES:
        if name in ds:
            delattr(ds, name)
    return ds


def _write(folder, exam, place):
    """The four images, side and view written only at ``place``; returns their paths."""
    paths = []
    for i, src in enumerate(exam):
        lat, view = src.ImageLaterality, src.ViewPosition
        ds = _bare(src)
        name = f"image{i}.dcm"
        sub = folder / "exam"
        if place == "standard":
            ds.Laterality = lat
            ds.ViewCodeSequence = src.ViewCodeSequence
        elif place == "PatientOrientation":
            ds.PatientOrientation = src.PatientOrientation
        elif place == "PatientID":        # each image its own study, side and view in the id
            ds.PatientID = f"P_00001_{SIDE_WORD[lat]}_{view}"
            ds.AccessionNumber = ""
            ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[place, str(i)])
        elif place == "AccessionNumber":  # each image its own study, one accession per image
            ds.AccessionNumber = f"A7731-{lat}{view}"
            ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[place, str(i)])
            ds.StudyDate = f"2016072{i}"
        elif place == "SeriesDescription":
            ds.SeriesDescription = f"{lat} {view}"
        elif place == "StudyDescription":
            ds.StudyDescription = f"{SIDE_WORD[lat].title()} {view} screening"
        elif place == "filename":
            name = f"{lat}_{view}.dcm"
        elif place == "folder":           # CBIS-DDSM-like: one folder per image, no PatientID
            del ds.PatientID
            ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[place, str(i)])
            ds.StudyDate = f"2016072{i}"
            sub = folder / f"Mass-Training_P_00001_{SIDE_WORD[lat]}_{view}" / "07-20-2016-DDSM"
            name = "1-1.dcm"
        path = sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append((path, lat, view))
    return paths


EXPECTED_SOURCE = {
    "standard": ("Laterality", "ViewCodeSequence"),
    "PatientOrientation": ("PatientOrientation", "PatientOrientation"),
    "PatientID": ("PatientID", "PatientID"),
    "AccessionNumber": ("AccessionNumber", "AccessionNumber"),
    "SeriesDescription": ("SeriesDescription", "SeriesDescription"),
    "StudyDescription": ("StudyDescription", "StudyDescription"),
    "filename": ("filename", "filename"),
    "folder": ("folder", "folder"),
}


@pytest.mark.parametrize("place", sorted(EXPECTED_SOURCE))
def test_side_and_view_found_in_one_place(exam, tmp_path, place):
    written = _write(tmp_path, exam, place)
    table = load_exams("dicom", tmp_path)
    assert table.skipped == [] and table.read == 4
    for path, lat, view in written:
        img = next(i for i in table.images if i.path == str(path))
        assert (img.laterality, img.view) == (lat, view)
    pairs, unpaired = pair_exams(table)
    assert unpaired == [] and sorted(p.view for p in pairs) == ["CC", "MLO"]
    assert len({p.patient for p in pairs}) == 1 and len({p.study for p in pairs}) == 1
    counts = table.source_counts()
    lat_src, view_src = EXPECTED_SOURCE[place]
    assert counts["laterality"] == {lat_src: 4} and counts["view"] == {view_src: 4}


def test_one_study_per_image_grouped_by_patient_number(exam, tmp_path):
    _write(tmp_path, exam, "PatientID")
    table = load_exams("dicom", tmp_path)
    assert {i.patient for i in table.images} == {"P_00001"}
    counts = table.source_counts()
    assert counts["patient"] == {"PatientID without side/view": 4}
    assert counts["study"] == {"StudyDate": 4}     # the generator's four images share a date


def test_unknown_side_or_view_rejected_with_reason(exam, tmp_path):
    written = _write(tmp_path, exam, "SeriesDescription")
    no_side, no_view = written[0][0], written[1][0]
    ds = pydicom.dcmread(no_side)
    ds.SeriesDescription = "screening"          # no side left anywhere
    ds.save_as(no_side)
    ds = pydicom.dcmread(no_view)
    ds.SeriesDescription = "RIGHT"
    ds.ViewPosition = "XCCL"                    # a view, but not CC or MLO
    ds.save_as(no_view)
    table = load_exams("dicom", tmp_path)
    reasons = {s.item: (s.reason, s.detail) for s in table.skipped}
    assert reasons[str(no_side)][0] == "missing laterality"
    assert reasons[str(no_view)][0] == "unknown view" and "XCCL" in reasons[str(no_view)][1]
    assert len(table.images) == 2 and table.read == 4
    pairs, unpaired = pair_exams(table)
    assert {s.reason for s in unpaired} <= {"missing contralateral image"}
    rep = Report({})
    rep.exams(table)
    rep.pairing(pairs, unpaired)
    for pair in pairs:
        rep.pair_used(pair, {})
    data = rep.finish()
    assert data["counts_add_up"] and data["images"]["rejected"] == 4 - 2 * len(pairs)
    assert data["images"]["sources"]["laterality"] == {"SeriesDescription": 2}
    json.dumps(data)


@pytest.mark.parametrize("text, lat, view, expected", [
    ("P_00001_LEFT_CC", "L", "CC", "P_00001"),
    ("Mass-Training_P_00001_RIGHT_MLO", "R", "MLO", "Mass-Training_P_00001"),
    ("A7731-LCC", "L", "CC", "A7731"),
    ("ID-R-123", "L", "CC", "ID-R-123"),       # does not name this image's side: kept
    ("12345", "L", "CC", "12345"),
])
def test_strip_side_view(text, lat, view, expected):
    assert dicom_exams.strip_side_view(text, lat, view) == expected


def test_later_study_stays_apart(exam, tmp_path):
    """A second round of single-image studies (other date) is not merged into the first."""
    first = tmp_path / "a"
    second = tmp_path / "b"
    _write(first, exam, "PatientID")
    _write(second, exam, "PatientID")
    for path in second.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.StudyDate = "20190101"
        ds.AccessionNumber = "later"
        ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["b", str(path)])
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["sop", str(path)])
        ds.save_as(path)
    table = load_exams("dicom", tmp_path)
    pairs, unpaired = pair_exams(table)
    assert unpaired == [] and len(pairs) == 4 and len({p.study for p in pairs}) == 2
    shutil.rmtree(first)


@pytest.mark.parametrize("text, lat, view", [
    ("P_00001_LEFT_CC", "L", "CC"),
    ("R MLO", "R", "MLO"),
    ("RCC", "R", "CC"),
    ("L_MLO", "L", "MLO"),
    ("Right cranio-caudal", "R", "CC"),
    ("R12345", None, None),            # a bare letter in an id names no side
    ("HOLOGIC L", None, None),
    ("A\\R", None, None),              # an orientation code is not text
])
def test_text_rules(text, lat, view):
    from ingest.adapters import dicom_tags

    assert dicom_tags.laterality_from_text(text) == lat
    assert dicom_tags.view_from_text(text) == view


@pytest.mark.parametrize("code, expected", [
    ("A\\R", ("L", "CC")), ("P\\L", ("R", "CC")), ("A\\FR", ("L", "MLO")), ("P\\FL", ("R", "MLO")),
    ("A\\F", (None, None)), ("L CC", (None, None)),
])
def test_orientation_code(code, expected):
    from ingest.adapters import dicom_tags

    assert dicom_tags.orientation_code(code) == expected
