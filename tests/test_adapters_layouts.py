"""The VinDr-Mammo, OPTIMAM and synthetic adapters on tiny generated datasets."""
from __future__ import annotations

import json

import pytest

from ingest.adapters import load_exams
from ingest.adapters import synthetic
from ingest.pairing import pair_exams
from shards.publish import is_temporary

SIZE = (256, 192)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    from ingest.synth import generate

    root = tmp_path_factory.mktemp("layouts")
    out = {}
    for layout in ("vindr", "optimam"):
        generate(layout=layout, patients=3, out=str(root / layout), seed=1, image_size=SIZE,
                 lesion_fraction=0.7, progress=False)
        with open(root / layout / "ground_truth.json") as f:
            out[layout] = (root / layout, json.load(f)["images"])
    return out


@pytest.mark.parametrize("layout", ["vindr", "optimam"])
def test_adapter_matches_ground_truth(generated, layout):
    root, truth = generated[layout]
    table = load_exams(layout, root)
    assert table.skipped == []
    assert len(table.images) == len(truth)
    by_id = {img.image_id: img for img in table.images}
    for gt in truth:
        img = by_id[gt["image_id"]]
        assert (img.laterality, img.view) == (gt["laterality"], gt["view"])
        assert img.path.endswith(gt["path"])
        assert img.patient == gt["patient"]        # header PatientID / client id
        boxes = sorted(tuple(round(v, 1) for v in r.box) for r in img.rois)
        assert boxes == sorted(tuple(float(v) for v in les["box"]) for les in gt["lesions"])
    assert any(img.rois for img in table.images), "the fixture should hold lesions"
    pairs, unpaired = pair_exams(table)
    assert unpaired == [] and len(pairs) == len(truth) // 2
    assert all(p.left.laterality == "L" and p.right.laterality == "R" for p in pairs)


def test_vindr_labels(generated):
    root, truth = generated["vindr"]
    table = load_exams("vindr", root)
    lesion_images = [img for img in table.images if img.rois]
    gt = {g["image_id"]: g for g in truth}
    for img in lesion_images:
        assert [r.birads for r in img.rois] == [str(les["birads"]) for les in gt[img.image_id]["lesions"]]
        assert img.birads == str(gt[img.image_id]["birads"])
        assert all(r.label in ("Mass", "Suspicious Calcification") for r in img.rois)


def test_optimam_outcome_and_marks(generated):
    root, truth = generated["optimam"]
    table = load_exams("optimam", root)
    gt = {g["image_id"]: g for g in truth}
    for img in table.images:
        assert img.outcome == gt[img.image_id]["patient_outcome"].capitalize()
        for roi, les in zip(img.rois, gt[img.image_id]["lesions"]):
            assert roi.outcome == les["outcome"].capitalize() or (
                les["outcome"] == "malignant" and roi.outcome in ("Malignant", "Interval Cancer"))


def test_vindr_reports_missing_and_bad_rows(generated, tmp_path):
    import shutil

    root, truth = generated["vindr"]
    copy = tmp_path / "vindr"
    shutil.copytree(root, copy)
    gone = truth[0]
    (copy / gone["path"]).unlink()
    csv = (copy / "breast-level_annotations.csv").read_text().splitlines()
    # One row with an unknown view, one with no laterality.
    csv[2] = csv[2].replace(",CC,", ",XCCL,").replace(",MLO,", ",XCCL,")
    csv[3] = csv[3].replace(",L,", ",,").replace(",R,", ",,")
    (copy / "breast-level_annotations.csv").write_text("\n".join(csv) + "\n")
    table = load_exams("vindr", copy)
    reasons = sorted(s.reason for s in table.skipped)
    assert reasons == ["missing file", "missing laterality", "unknown view"]
    assert table.read == len(truth)


def test_synthetic_generates_once(tmp_path, monkeypatch):
    import ingest.synth

    calls = []
    original = ingest.synth.generate

    def counting(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(ingest.synth, "generate", counting)
    a = load_exams("synthetic", cache_dir=tmp_path, patients=2, image_size=SIZE)
    b = load_exams("synthetic", cache_dir=tmp_path, patients=2, image_size=SIZE)
    assert len(calls) == 1
    assert [i.path for i in a.images] == [i.path for i in b.images]
    assert {i.dataset for i in a.images} == {"synthetic"}
    assert [p.name for p in tmp_path.iterdir() if is_temporary(p.name)] == []
    # Outcomes come from the generator's ground truth.
    assert all(img.outcome in ("Normal", "Benign", "Malignant") for img in a.images)
