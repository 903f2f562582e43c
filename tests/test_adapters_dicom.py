"""Laterality/view inference from DICOM headers and the plain DICOM-folder adapter."""
from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.dataset import Dataset

from ingest.adapters import dicom_tags, load_exams
from ingest.pairing import pair_exams


def _ds(**tags) -> Dataset:
    ds = Dataset()
    for name, value in tags.items():
        setattr(ds, name, value)
    return ds


def _code(value: str, meaning: str = "") -> Dataset:
    return _ds(CodeValue=value, CodeMeaning=meaning)


@pytest.mark.parametrize("tags, text, expected", [
    ({"ImageLaterality": "L"}, "", "L"),
    ({"Laterality": "R"}, "", "R"),
    ({"ImageLaterality": "R", "SeriesDescription": "L CC"}, "", "R"),   # the tag wins
    ({"SeriesDescription": "RMLO"}, "", "R"),
    ({"ProtocolName": "Left CC"}, "", "L"),
    ({}, "exam/lcc_0001.dcm", "L"),
    ({}, "exam/image_0001.dcm", None),
    ({"SeriesDescription": "L CC and R CC"}, "", None),                  # ambiguous
])
def test_laterality(tags, text, expected):
    assert dicom_tags.laterality(_ds(**tags), text)[0] == expected


@pytest.mark.parametrize("tags, text, expected", [
    ({"ViewPosition": "CC"}, "", "CC"),
    ({"ViewPosition": "MLO"}, "", "MLO"),
    ({"ViewCodeSequence": [_code("R-10226")]}, "", "MLO"),
    ({"ViewCodeSequence": [_code("399162004")]}, "", "CC"),
    ({"ViewCodeSequence": [_code("X", "cranio-caudal")]}, "", "CC"),
    ({"ViewPosition": "ML"}, "", None),                                  # not a screening view
    ({"SeriesDescription": "R MLO"}, "", "MLO"),
    ({}, "RCC.dcm", "CC"),
])
def test_view(tags, text, expected):
    assert dicom_tags.view(_ds(**tags), text)[0] == expected


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from ingest.synth import generate

    root = tmp_path_factory.mktemp("dicom") / "optimam"
    generate(layout="optimam", patients=2, out=str(root), seed=3, image_size=(256, 192),
             progress=False)
    return root


def _images(root):
    return sorted((root / "images").rglob("*.dcm"))


def test_folder_reads_headers(generated, tmp_path):
    folder = tmp_path / "dicoms"
    shutil.copytree(generated / "images", folder)
    (folder / "notes.txt").write_text("not an image")       # ignored: not a DICOM name
    table = load_exams("dicom", folder)
    assert table.skipped == []
    assert len(table.images) == len(_images(generated))
    pairs, unpaired = pair_exams(table)
    assert unpaired == [] and len(pairs) == len(table.images) // 2
    for img in table.images:
        ds = pydicom.dcmread(img.path, stop_before_pixels=True)
        assert img.laterality == ds.ImageLaterality and img.view == ds.ViewPosition
        assert img.patient == ds.PatientID and img.study == ds.StudyInstanceUID


def test_folder_reports_skips_and_manifest_overrides(generated, tmp_path):
    folder = tmp_path / "dicoms"
    shutil.copytree(generated / "images", folder)
    files = sorted(folder.rglob("*.dcm"))
    garbage, no_tags, overridden = files[0], files[1], files[2]
    garbage.write_bytes(b"this is not a DICOM file")
    ds = pydicom.dcmread(no_tags)
    for name in ("ImageLaterality", "Laterality", "SeriesDescription", "ProtocolName",
                 "PatientOrientation"):
        if name in ds:
            delattr(ds, name)
    ds.save_as(no_tags)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,patient,view\n"
                        f"{overridden.relative_to(folder)},P-override,\n"
                        "missing/file.dcm,P,CC\n")
    table = load_exams("dicom", folder, manifest=manifest)
    reasons = sorted(s.reason for s in table.skipped)
    assert reasons == ["missing file", "missing laterality", "unreadable"]
    unreadable = next(s for s in table.skipped if s.reason == "unreadable")
    assert unreadable.item == str(garbage) and unreadable.detail
    img = next(i for i in table.images if i.path == str(overridden))
    assert img.patient == "P-override"
    assert img.view == pydicom.dcmread(overridden, stop_before_pixels=True).ViewPosition
    assert table.read == len(files) + 1     # + the manifest's missing file


def test_dicom_needs_root():
    with pytest.raises(ValueError, match="--root"):
        load_exams("dicom")
