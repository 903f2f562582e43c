"""The synthetic generator's VinDr-Mammo and OPTIMAM layouts, read back with csv/json/pydicom only."""
import ast
import csv
import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ingest.synth import generate, render_exam

SIZE = (256, 192)
SEED = 11
N = 3
VINDR_BREAST = ["study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
                "breast_birads", "breast_density", "split"]
VINDR_FINDING = VINDR_BREAST[:-1] + ["finding_categories", "finding_birads", "xmin", "ymin", "xmax",
                                     "ymax", "split"]
MAMMO_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


def _rows(path: Path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def vindr(tmp_path_factory):
    out = tmp_path_factory.mktemp("vindr")
    summary = generate("vindr", N, out, seed=SEED, image_size=SIZE, lesion_fraction=0.8,
                       studies_per_patient=(1, 2), progress=False)
    return out, summary


@pytest.fixture(scope="module")
def optimam(tmp_path_factory):
    out = tmp_path_factory.mktemp("optimam")
    generate("optimam", N, out, seed=SEED, image_size=SIZE, lesion_fraction=0.8,
             studies_per_patient=(1, 2), progress=False)
    return out


@pytest.fixture(scope="module")
def renders():
    """The same patients rendered in memory: {(patient index, study, laterality, view): image}."""
    out = {}
    for layout in ("vindr", "optimam"):
        for i in range(N):
            _, studies = render_exam(SEED, i, image_size=SIZE, layout=layout, lesion_fraction=0.8,
                                     studies_per_patient=(1, 2))
            for k, images in enumerate(studies):
                for img in images:
                    out[(layout, i, k, img.record["laterality"], img.record["view"])] = img
    return out


def _check_dicom(ds, lat, view):
    assert ds.Modality == "MG"
    assert ds.SOPClassUID == MAMMO_FOR_PRESENTATION
    assert ds.file_meta.MediaStorageSOPClassUID == MAMMO_FOR_PRESENTATION
    assert ds.ImageLaterality == lat and ds.ViewPosition == view
    code = ds.ViewCodeSequence[0]
    assert (code.CodingSchemeDesignator, code.CodeValue) == ("SCT", {"CC": "399162004", "MLO": "399368009"}[view])
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert ds.BitsAllocated == 16 and 12 <= ds.BitsStored <= 14 and ds.HighBit == ds.BitsStored - 1
    assert ds.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2")
    assert ds.PatientOrientation[0] == ("A" if lat == "L" else "P")
    assert float(ds.WindowWidth) > 0
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)+", uid) and len(uid) <= 64
    px = ds.pixel_array
    assert px.dtype == np.uint16 and px.shape == (ds.Rows, ds.Columns) == SIZE
    assert int(px.max()) < 2 ** ds.BitsStored
    return px


def _check_image(px, ds, img):
    np.testing.assert_array_equal(px, img.pixels)           # bit-exact against the in-memory render
    mask = img.mask
    pad = ds.PixelPaddingValue
    # Background is the padding value (labels may be burned in outside the breast).
    bg = px[~mask]
    assert (bg == pad).mean() > 0.97
    assert pad == (0 if ds.PhotometricInterpretation == "MONOCHROME2" else 2 ** ds.BitsStored - 1)
    # Chest wall on the left edge for a left breast, on the right edge for a right breast.
    left, right = mask[:, :4].mean(), mask[:, -4:].mean()
    assert (left > right) if ds.ImageLaterality == "L" else (right > left)
    for les in img.record["lesions"]:
        x0, y0, x1, y1 = les["box"]
        assert 0 <= x0 < x1 <= SIZE[1] and 0 <= y0 < y1 <= SIZE[0]
        assert mask[y0:y1, x0:x1].all(), "lesion box leaves the breast"


def test_vindr_tables_and_dicoms(vindr, renders):
    out, summary = vindr
    cols, breast = _rows(out / "breast-level_annotations.csv")
    assert cols == VINDR_BREAST
    fcols, findings = _rows(out / "finding_annotations.csv")
    assert fcols == VINDR_FINDING
    mcols, meta = _rows(out / "metadata.csv")
    for needed in ("SOP Instance UID", "Series Instance UID", "Patient's Age", "Manufacturer",
                   "Manufacturer's Model Name", "Rows", "Columns", "Photometric Interpretation"):
        assert needed in mcols
    assert len(breast) == len(meta) == summary["images"] and summary["images"] % 4 == 0
    gt = json.loads((out / "ground_truth.json").read_text())
    assert len(gt["images"]) == len(breast)
    by_image = {g["image_id"]: g for g in gt["images"]}
    for row in breast:
        assert re.fullmatch(r"BI-RADS [1-5]", row["breast_birads"])
        assert re.fullmatch(r"DENSITY [A-D]", row["breast_density"])
        assert row["split"] in ("training", "test")
        assert (int(row["height"]), int(row["width"])) == SIZE
        path = out / "images" / row["study_id"] / f"{row['image_id']}.dicom"
        ds = pydicom.dcmread(path)
        px = _check_dicom(ds, row["laterality"], row["view_position"])
        g = by_image[row["image_id"]]
        assert g["path"] == str(path.relative_to(out))
        img = renders[("vindr", g["patient_index"], g["study_number"], g["laterality"], g["view"])]
        _check_image(px, ds, img)
    n_lesion_rows = 0
    for row in findings:
        cats = ast.literal_eval(row["finding_categories"])
        g = by_image[row["image_id"]]
        if cats == ["No Finding"]:
            assert row["xmin"] == row["finding_birads"] == "" and not g["lesions"]
            continue
        n_lesion_rows += 1
        assert cats[0] in ("Mass", "Suspicious Calcification")
        assert re.fullmatch(r"BI-RADS [3-5]", row["finding_birads"])
        box = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        assert box in [[float(v) for v in les["box"]] for les in g["lesions"]]
    assert n_lesion_rows == sum(len(g["lesions"]) for g in gt["images"]) > 0


def test_optimam_files(optimam, renders):
    out = optimam
    gt = json.loads((out / "ground_truth.json").read_text())
    clients = sorted(p.name for p in (out / "data").iterdir())
    assert len(clients) == N
    seen = 0
    for client in clients:
        imagedb = json.loads((out / "data" / client / f"imagedb_{client}.json").read_text())
        nbss = json.loads((out / "data" / client / f"nbss_{client}.json").read_text())
        mine = [g for g in gt["images"] if g["client"] == client]
        has_lesion = any(g["lesions"] for g in mine)
        assert nbss["Status"] in ("Normal", "Benign", "Malignant")
        assert (nbss["Status"] != "Normal") == has_lesion
        for study_uid, study in imagedb["STUDIES"].items():
            assert re.fullmatch(r"\d{8}", study["StudyDate"]) and study["EpisodeID"] in nbss
            for series_uid, series in study.items():
                if not isinstance(series, dict):
                    continue
                for sop, marks in series.items():
                    seen += 1
                    path = out / "images" / client / study_uid / f"{sop}.dcm"
                    ds = pydicom.dcmread(path)
                    header = json.loads((out / "data" / client / study_uid / f"{sop}.json").read_text())
                    assert "7FE00010" not in header                      # no pixel data in the JSON
                    assert pydicom.Dataset.from_json(header).SOPInstanceUID == ds.SOPInstanceUID == sop
                    assert ds.SeriesInstanceUID == series_uid and ds.StudyInstanceUID == study_uid
                    g = next(g for g in mine if g["sop_uid"] == sop)
                    px = _check_dicom(ds, g["laterality"], g["view"])
                    _check_image(px, ds, renders[("optimam", g["patient_index"], g["study_number"],
                                                  g["laterality"], g["view"])])
                    assert len(marks) == len(g["lesions"])
                    for mark, les in zip(marks.values(), g["lesions"]):
                        assert [mark["X1"], mark["Y1"], mark["X2"] + 1, mark["Y2"] + 1] == les["box"]
                        assert (mark["Mass"] == 1) == (les["type"] == "mass")
                        assert (mark["SuspiciousCalcifications"] == 1) == (les["type"] == "calcification")
                        assert mark["Conspicuity"] in ("Subtle", "Obvious")
    assert seen == len(gt["images"])


def test_header_variety_and_burned_labels():
    from ingest.synth import plan_patient, render_image

    plans = [plan_patient(SEED, i, image_size=SIZE, studies_per_patient=(1, 2)) for i in range(40)]
    studies = [s for p in plans for s in p.studies]
    assert {s.photometric for s in studies} == {"MONOCHROME1", "MONOCHROME2"}
    assert {s.voi_function for s in studies} == {"LINEAR", "SIGMOID"}
    assert {s.burned_label for s in studies} == {True, False}
    assert {p.bits_stored for p in plans} == {12, 14}
    assert {p.device[1] for p in plans} >= {"MAMMOMAT Inspiration", "Planmed Nuance"}
    assert 0.15 < sum(p.lesion is not None for p in plans) / len(plans) < 0.5   # default 0.3
    plan, k = next((p, k) for p in plans for k, s in enumerate(p.studies) if s.burned_label)
    img = render_image(plan, k, "L", "CC")
    outside = img.pixels[~img.mask]
    assert (outside != img.record["padding_value"]).any()          # the label's pixels
    assert (outside == img.record["padding_value"]).mean() > 0.97
    cols = np.nonzero((img.pixels != img.record["padding_value"]) & ~img.mask)[1]
    assert cols.min() > SIZE[1] // 2                                # away from the chest wall
