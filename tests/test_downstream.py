import numpy as np
import pytest

from ingest.downstream import LabelledRoi, as_roi, labelled_patches, parse_birads, parse_outcome

H, W, S = 64, 48, 16


@pytest.fixture
def pair():
    left = np.full((H, W), 1000, np.uint16)
    right = np.full((H, W), 2000, np.uint16)
    left[20:30, 10:20] = 60000          # the lesion on the left side
    return left, right


def by_task(items, task):
    return [(img, m) for img, m in items if m["task"] == task]


def test_abnormal_and_normal_patches(pair):
    left, right = pair
    rois = {"left": [{"box": [20, 10, 30, 20], "birads": "BI-RADS 4", "outcome": "Malignant"}]}
    items = labelled_patches(left, right, rois, S)
    ab = by_task(items, "abnormal")
    assert [(m["side"], m["label"], m["label_name"]) for _, m in ab] == [
        ("left", 1, "abnormal"), ("right", 0, "normal")]
    # centred on the ROI centre (25, 15): box [17, 7, 33, 23], same place on both sides
    assert ab[0][1]["box"] == ab[1][1]["box"] == [17, 7, 33, 23]
    img, _ = ab[0]
    assert img.dtype == np.uint16 and img.shape == (S, S) and img.max() == 60000
    assert (ab[1][0] == 2000).all()      # from the contralateral image
    bi = by_task(items, "birads")
    assert [(m["label"], m["label_name"]) for _, m in bi] == [(2, "BI-RADS 4"), (0, "BI-RADS 1")]
    oc = by_task(items, "outcome")
    assert [(m["label"], m["label_name"]) for _, m in oc] == [(2, "malignant"), (0, "background")]


def test_clamped_inside_and_labels_left_out(pair):
    left, right = pair
    rois = {"right": [LabelledRoi((0, 40, 4, 48), birads=2, outcome="benign"),
                      [30, 0, 40, 5, "Mass"]]}
    items = labelled_patches(left, right, rois, S, tasks=("abnormal", "birads", "outcome"))
    boxes = {tuple(m["box"]) for _, m in items}
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 and y1 <= H and 0 <= x0 and x1 <= W and y1 - y0 == S and x1 - x0 == S
    assert (0, 32, 16, 48) in boxes                    # corner ROI: pushed inside
    assert not by_task(items, "birads")                # BI-RADS 2 and unknown are left out
    oc = by_task(items, "outcome")
    assert [(m["side"], m["label"]) for _, m in oc] == [("right", 1), ("left", 0)]
    assert len(by_task(items, "abnormal")) == 4


def test_normal_patch_skipped_over_contralateral_roi_or_background(pair):
    left, right = pair
    rois = {"left": [[20, 10, 30, 20]], "right": [[22, 12, 26, 16]]}
    items = labelled_patches(left, right, rois, S, tasks=("abnormal",))
    assert [m["label"] for _, m in items] == [1, 1]    # both sides abnormal there: no normal patch
    mask = np.zeros((H, W), bool)                      # the other side is all background
    items = labelled_patches(left, right, {"left": [[20, 10, 30, 20]]}, S, tasks=("abnormal",),
                             left_mask=~mask, right_mask=mask)
    assert [m["label"] for _, m in items] == [1]


def test_parsers_and_errors(pair):
    assert parse_birads("BI-RADS 5") == 5 and parse_birads(3) == 3 and parse_birads("4a") == 4
    assert parse_birads(None) is None and parse_birads("x") is None
    assert parse_outcome("Interval Cancer") == "malignant" and parse_outcome("BENIGN") == "benign"
    assert parse_outcome("Normal") is None
    assert as_roi([1, 2, 3, 4, "Mass"]).label == "Mass"
    left, right = pair
    with pytest.raises(ValueError, match="unknown task"):
        labelled_patches(left, right, {"left": [[0, 0, 4, 4]]}, S, tasks=("nope",))
    with pytest.raises(ValueError, match="does not fit"):
        labelled_patches(left, right, {"left": [[0, 0, 4, 4]]}, 100)
