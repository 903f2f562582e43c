"""Registration through the real path on generated exams whose two sides differ only by their
known positioning: DICOM files written by ``ingest.synth`` (``pair_variation="positioning-only"``),
read back with pydicom, normalised by ``ingest.normalize`` and registered with the defaults. The
acceptance criterion: median corner error <= 1 px at 1152x896 over the CC and MLO pairs."""
import json
from dataclasses import asdict

import numpy as np
import pydicom
import pytest

from ingest import register as rg
from ingest.normalize import normalize_dataset
from ingest.params import RegisterParams
from ingest.register_truth import truth_check, truth_transform
from ingest.synth import generate
from ingest.synth.positioning import pair_matrix

FULL = (1152, 896)
PATIENTS = 3


@pytest.fixture(scope="module")
def exam_pairs(tmp_path_factory):
    """(left NormalizedImage, right NormalizedImage, truth) per patient and view, left fixed."""
    out = tmp_path_factory.mktemp("positioning-only")
    generate("vindr", PATIENTS, out, seed=0, image_size=FULL, lesion_fraction=0.0, workers=1,
             studies_per_patient=(1, 1), progress=False, pair_variation="positioning-only")
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["pair_variation"] == "positioning-only"
    records = {(im["patient_index"], im["view"], im["laterality"]): im for im in truth["images"]}
    pairs = []
    for index in range(PATIENTS):
        for view in ("CC", "MLO"):
            left, right = records[(index, view, "L")], records[(index, view, "R")]
            norm = {side: normalize_dataset(pydicom.dcmread(out / rec["path"]), out_shape=FULL)
                    for side, rec in (("L", left), ("R", right))}
            assert norm["R"].flipped and not norm["L"].flipped
            m = pair_matrix(left, right)
            pairs.append((norm["L"], norm["R"], truth_transform(m, norm["L"].scale, norm["R"].scale)))
    return pairs


def test_truth_composition_aligns_the_pair(exam_pairs):
    """The composed truth (normalisation + known positioning) really aligns the two sides: the
    right breast warped by it matches the left one almost exactly, and far better than unwarped."""
    left, right, truth = exam_pairs[0]
    check = truth_check(left, right, truth)
    assert check["tissue_ncc_truth"] > 0.95, check
    assert check["dice_truth"] > 0.98, check
    assert check["tissue_ncc_truth"] > check["tissue_ncc_identity"] + 0.1, check


def test_median_corner_error_at_most_one_pixel(exam_pairs):
    """Acceptance: median corner error <= 1 px at 1152x896 through DICOM and normalisation."""
    errors = []
    for left, right, truth in exam_pairs:
        reg = rg.register_pair(left.pixels, right.pixels, left.mask, right.mask,
                               **asdict(RegisterParams()))
        assert reg.transform["type"] == "Similarity2DTransform"
        assert rg.passes_quality(reg)[0], reg.quality()
        errors.append(rg.corner_error(reg.transform, truth, FULL))
    assert len(errors) == 2 * PATIENTS
    assert float(np.median(errors)) <= 1.0, errors
    assert max(errors) <= 5.0, errors
