"""The CBIS-DDSM and RSNA adapters on generated copies of their published layouts."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ingest.adapters import load_exams
from ingest.pairing import pair_exams

SIZE = (256, 192)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from ingest.synth import generate

    root = tmp_path_factory.mktemp("real-layouts")
    out = {}
    # Seeds chosen for their content: CBIS-DDSM with benign and malignant findings and
    # lesion-free patients; RSNA with extra views (LM, LMO) and a repeated CC.
    for layout, seed in (("cbis-ddsm", 1), ("rsna", 19)):
        generate(layout=layout, patients=5, out=str(root / layout), seed=seed, image_size=SIZE,
                 lesion_fraction=0.6, progress=False)
        with open(root / layout / "ground_truth.json") as f:
            out[layout] = (root / layout, json.load(f)["images"])
    return out


def dicoms(root: Path, under: str = "") -> list[Path]:
    return sorted((root / under).rglob("*.dcm"))


@pytest.mark.parametrize("layout", ["cbis-ddsm", "rsna"])
def test_synth_command_writes_the_layout_deterministically(tmp_path, layout):
    from ingest.cli import main
    from ingest.synth import generate

    args = ["synth", "--layout", layout, "--patients", "3", "--seed", "4", "--image-size", "128",
            "96", "--lesion-fraction", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "a"), "--workers", "2",
                 "--preview", str(tmp_path / "sheet.png")]) == 0
    generate(layout=layout, patients=3, out=str(tmp_path / "b"), seed=4, image_size=(128, 96),
             lesion_fraction=1.0, workers=1, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) > 12 and (tmp_path / "sheet.png").stat().st_size > 0
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


# ---------------------------------------------------------------- CBIS-DDSM


def test_cbis_every_image_used_and_matches_truth(generated):
    root, truth = generated["cbis-ddsm"]
    table = load_exams("cbis-ddsm", root)
    assert table.skipped == []
    full_images = [p for p in dicoms(root) if "full mammogram" in str(p)]
    assert len(table.images) == len(full_images) == len(truth)
    by_id = {img.image_id: img for img in table.images}
    for gt in truth:
        img = by_id[gt["image_id"]]          # the folder name
        assert img.path.endswith(gt["path"])
        assert (img.patient, img.study) == (gt["patient"], gt["patient"])
        assert (img.laterality, img.view) == (gt["laterality"], gt["view"])
        # ROI boxes from the masks are the generator's lesion boxes, to the pixel.
        assert [r.box for r in img.rois] == [tuple(float(v) for v in les["box"])
                                             for les in gt["lesions"]]
        for roi, les in zip(img.rois, gt["lesions"]):
            assert roi.outcome == les["outcome"].capitalize()
            assert roi.birads == str(les["birads"])
            assert roi.label == {"mass": "Mass", "calcification": "Calcification"}[les["type"]]
        assert img.outcome == (gt["lesions"][0]["outcome"].capitalize() if gt["lesions"] else None)
    assert {r.outcome for img in table.images for r in img.rois} == {"Benign", "Malignant"}
    assert any(not img.rois for img in table.images), "images no CSV lists are used too"


def test_cbis_four_images_of_a_patient_form_two_pairs(generated):
    root, truth = generated["cbis-ddsm"]
    pairs, unpaired = pair_exams(load_exams("cbis-ddsm", root))
    assert unpaired == []
    patients = {gt["patient"] for gt in truth}
    assert len(pairs) == 2 * len(patients)
    for patient in patients:
        mine = [p for p in pairs if p.patient == patient]
        assert sorted(p.view for p in mine) == ["CC", "MLO"]
        assert all(p.left.laterality == "L" and p.right.laterality == "R" for p in mine)
        # Four separate DICOM studies make one exam.
        uids = {pydicom.dcmread(i.path, stop_before_pixels=True).StudyInstanceUID
                for p in mine for i in (p.left, p.right)}
        assert len(uids) == 4


def test_cbis_files_look_like_the_real_ones(generated):
    root, truth = generated["cbis-ddsm"]
    ds = pydicom.dcmread(root / truth[0]["path"])
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsStored == 16
    assert ds.pixel_array.dtype == np.uint16 and ds.pixel_array.max() > 4095
    for tag in ("ImageLaterality", "Laterality", "ViewPosition", "ViewCodeSequence"):
        assert tag not in ds
    assert ds.PatientID == truth[0]["image_id"]
    rows = []
    for name in ("mass_case_description_train_set.csv", "calc_case_description_train_set.csv",
                 "mass_case_description_test_set.csv", "calc_case_description_test_set.csv"):
        with open(root / name, newline="") as f:
            rows += list(csv.DictReader(f))
    assert len(rows) == sum(len(gt["lesions"]) for gt in truth)
    # The published paths do not match the folders on disk; the mask path ends in a newline.
    assert all(not (root / r["image file path"]).exists() for r in rows)
    assert all(r["ROI mask file path"].endswith("\n") for r in rows)


def test_cbis_rejects_with_reasons(generated, tmp_path):
    root, truth = generated["cbis-ddsm"]
    copy = tmp_path / "cbis"
    shutil.copytree(root, copy)
    images = copy / "CBIS-DDSM"
    lesions = [gt for gt in truth if gt["lesions"]]
    # 1. an abnormality whose ROI mask is gone: its image is rejected, not used as normal
    no_mask = lesions[0]
    for f in (copy / no_mask["roi_files"][0]["mask"]).parent.glob("*.dcm"):
        if pydicom.dcmread(f).SeriesDescription == "ROI mask images":
            f.unlink()
    # 2. an image the CSV lists, missing on disk
    gone = lesions[1]
    shutil.rmtree(images / gone["image_id"])
    # 3. a DICOM outside any CBIS-DDSM folder
    shutil.copy(copy / truth[0]["path"], copy / "stray.dcm")
    # 4. the same image under a second folder name (a mass and a calcification of one breast)
    normal = next(gt for gt in truth if not gt["lesions"])
    twin = "Calc-Training" if normal["image_id"].startswith("Mass") else "Mass-Training"
    twin_name = twin + normal["image_id"][normal["image_id"].index("_"):]
    shutil.copytree(images / normal["image_id"], images / twin_name)
    table = load_exams("cbis-ddsm", copy)
    reasons = {s.reason: s for s in table.skipped}
    assert sorted(reasons) == ["ROI mask unusable", "duplicate image", "missing file",
                               "unrecognised folder"]
    assert reasons["ROI mask unusable"].item.endswith(no_mask["path"])
    assert reasons["missing file"].item == gone["image_id"]
    assert reasons["unrecognised folder"].item.endswith("stray.dcm")
    assert min(normal["image_id"], twin_name) in reasons["duplicate image"].detail
    assert len(table.images) == len(truth) - 2
    assert table.read == len(truth) + 2        # every DICOM image on disk, plus the listed one


def test_cbis_needs_case_csvs(tmp_path):
    with pytest.raises(FileNotFoundError, match="case_description"):
        load_exams("cbis-ddsm", tmp_path)


# ---------------------------------------------------------------- RSNA


def test_rsna_every_image_used_or_rejected(generated):
    root, truth = generated["rsna"]
    table = load_exams("rsna", root)
    with open(root / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert table.read == len(rows) == len(dicoms(root, "train_images"))
    extras = [e for gt in truth for e in gt["extra_images"]]
    odd = sorted(e["view"] for e in extras if e["view"] != "CC")
    assert odd, "the fixture should hold views other than CC and MLO"
    assert sorted(s.reason for s in table.skipped) == ["unknown view"] * len(odd)
    assert sorted(s.detail.split("'")[1] for s in table.skipped) == odd
    by_id = {img.image_id: img for img in table.images}
    for gt in truth:
        img = by_id[gt["image_id"]]
        assert (img.patient, img.laterality, img.view) == (gt["patient"], gt["laterality"], gt["view"])
        assert img.rois == ()
        lesion = gt["lesions"][0]["outcome"] if gt["lesions"] else None
        assert img.outcome == {"malignant": "Malignant", "benign": "Benign", None: "Normal"}[lesion]


def test_rsna_pairs_and_repeats(generated):
    root, truth = generated["rsna"]
    pairs, unpaired = pair_exams(load_exams("rsna", root))
    repeats = [e for gt in truth for e in gt["extra_images"] if e["view"] == "CC"]
    assert repeats, "the fixture should hold a repeated CC"
    assert [s.reason for s in unpaired] == ["duplicate image"] * len(repeats)
    patients = {gt["patient"] for gt in truth}
    assert len(pairs) == 2 * len(patients)
    assert all(sorted(p.view for p in pairs if p.patient == pt) == ["CC", "MLO"] for pt in patients)


def test_rsna_headers_carry_no_side_or_view(generated):
    root, truth = generated["rsna"]
    ds = pydicom.dcmread(root / truth[0]["path"], stop_before_pixels=True)
    for tag in ("ImageLaterality", "ViewPosition", "ViewCodeSequence", "PatientOrientation"):
        assert tag not in ds
    assert ds.PatientID == truth[0]["patient"]


def test_rsna_site_2_files_are_jpeg2000_and_decode_exactly(generated):
    from ingest.synth import render_image
    from ingest.synth.exam import plan_patient

    root, truth = generated["rsna"]
    with open(root / "train.csv", newline="") as f:
        site = {r["image_id"]: r["site_id"] for r in csv.DictReader(f)}
    compressed = []
    for gt in truth:
        syntax = pydicom.dcmread(root / gt["path"], stop_before_pixels=True).file_meta.TransferSyntaxUID
        assert syntax.is_compressed == (site[gt["image_id"]] == "2")
        if syntax.is_compressed:
            assert syntax == pydicom.uid.JPEG2000Lossless
            compressed.append(gt)
    assert 0 < len(compressed) < len(truth), "the fixture should hold both sites"
    gt = compressed[0]
    plan = plan_patient(19, gt["patient_index"], "rsna", SIZE, 0.6, (1, 1))
    expected = render_image(plan, 0, gt["laterality"], gt["view"]).pixels
    assert np.array_equal(pydicom.dcmread(root / gt["path"]).pixel_array, expected)


def test_rsna_reports_unlisted_and_missing_files(generated, tmp_path):
    root, truth = generated["rsna"]
    copy = tmp_path / "rsna"
    shutil.copytree(root, copy)
    (copy / truth[0]["path"]).unlink()
    shutil.copy(copy / truth[1]["path"], copy / "train_images" / truth[1]["patient"] / "999.dcm")
    table = load_exams("rsna", copy)
    reasons = {s.reason: s.item for s in table.skipped}
    assert reasons["missing file"].endswith(truth[0]["path"])
    assert reasons["not in train.csv"].endswith("999.dcm")


def test_rsna_needs_train_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.csv"):
        load_exams("rsna", tmp_path)


# ---------------------------------------------------------------- through the build commands


@pytest.fixture(scope="module")
def pair_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pair-cache")


def build_args(command, layout, root, out, cache, *extra):
    return [command, "--dataset", layout, "--root", str(root), "--size", "48", "--out", str(out),
            "--out-shape", "160x128", "--cache-dir", str(cache), "--workers", "1",
            "--no-progress", *extra]


@pytest.mark.parametrize("layout", ["cbis-ddsm", "rsna"])
def test_build_shards_on_generated_layouts(generated, pair_cache, tmp_path, layout):
    from ingest.cli import main

    root, truth = generated[layout]
    out = tmp_path / "shards"
    assert main(build_args("build-shards", layout, root, out, pair_cache)) == 0
    report = json.loads((out / "report.json").read_text())
    patients = {gt["patient"] for gt in truth}
    assert report["pairs"]["formed"] == 2 * len(patients)
    assert report["samples"]["total"] > 0
    images = report["images"]     # read = used + rejected, each rejection with its reason
    assert images["read"] == images["used"] + images["rejected"] == len(dicoms(root)) - sum(
        2 * len(gt.get("roi_files", [])) for gt in truth)
    assert images["used"] == 2 * report["pairs"]["used"] > 0
    if layout == "rsna":
        assert {"unknown view", "duplicate image"} <= set(images["reasons"])


def test_build_downstream_outcome_on_cbis(generated, pair_cache, tmp_path):
    from ingest.cli import main
    from shards.samples import iter_samples
    from shards.schema import decode_patch

    root, truth = generated["cbis-ddsm"]
    out = tmp_path / "outcome"
    assert main(build_args("build-downstream", "cbis-ddsm", root, out, pair_cache,
                           "--task", "outcome")) == 0
    names = {decode_patch(s).meta["label_name"] for tar in sorted(out.glob("*.tar"))
             for s in iter_samples(str(tar))}
    assert {"benign", "malignant"} <= names


def test_build_downstream_refuses_rsna(generated, tmp_path, capsys):
    from ingest.cli import main

    root, _ = generated["rsna"]
    assert main(build_args("build-downstream", "rsna", root, tmp_path / "x", tmp_path,
                           "--task", "outcome")) == 2
    assert "no ROIs" in capsys.readouterr().err
