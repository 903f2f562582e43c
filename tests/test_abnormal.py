import numpy as np
import pytest

from ingest.abnormal import abnormal_area, abnormal_areas, max_area, pair_areas

PATCH = [0, 0, 10, 10]   # y0, x0, y1, x1: area 100


def test_patch_inside_roi_is_one():
    assert abnormal_area([2, 2, 6, 6], [0, 0, 50, 50]) == 1.0


def test_roi_inside_patch_is_one():
    assert abnormal_area(PATCH, [3, 4, 5, 6]) == 1.0


def test_partial_overlap_hand_computed():
    # ROI [5, 5, 25, 15]: area 20*10 = 200; overlap with the patch: rows 5..10, cols 5..10 = 25
    # min(100, 200) = 100 → A = 0.25
    assert abnormal_area(PATCH, [5, 5, 25, 15]) == pytest.approx(0.25)
    # small ROI half outside: [8, 0, 12, 4] area 16, overlap rows 8..10 x cols 0..4 = 8 → 0.5
    assert abnormal_area(PATCH, [8, 0, 12, 4]) == pytest.approx(0.5)


def test_no_overlap_and_touching_edges_are_zero():
    assert abnormal_area(PATCH, [20, 20, 30, 30]) == 0.0
    assert abnormal_area(PATCH, [10, 0, 20, 10]) == 0.0     # end exclusive: shares an edge only
    assert abnormal_area(PATCH, [5, 5, 5, 9]) == 0.0        # empty ROI


def test_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, (7, 2))
    patches = np.concatenate([a, a + rng.integers(1, 20, (7, 2))], axis=1)
    b = rng.integers(0, 50, (5, 2))
    rois = np.concatenate([b, b + rng.integers(1, 30, (5, 2))], axis=1)
    mat = abnormal_areas(patches, rois)
    assert mat.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            assert mat[i, j] == pytest.approx(abnormal_area(patches[i], rois[j]))
    assert ((mat >= 0) & (mat <= 1)).all()


def test_pair_is_max_over_sides_and_rois():
    patches = [PATCH, [0, 10, 10, 20], [50, 50, 60, 60]]
    left = [[5, 5, 25, 15], [8, 0, 12, 4]]             # 0.25 and 0.5 on the first patch
    right = [[0, 12, 4, 14]]                           # inside the second patch → 1
    out = pair_areas(patches, left, right)
    np.testing.assert_allclose(out["left"], [0.5, 0.25, 0.0])
    np.testing.assert_allclose(out["right"], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(out["pair"], [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(max_area(patches, []), [0, 0, 0])
