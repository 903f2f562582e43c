import json

import numpy as np
import pytest
import SimpleITK as sitk

from ingest import register as rg
from ingest.phantom import phantom, to_uint16
from ingest.register_truth import known_pair

FULL = (1152, 896)


@pytest.fixture(scope="module")
def full_pairs():
    return [known_pair(FULL, seed=s) for s in (0, 1)]


def test_accuracy_at_full_size(full_pairs):
    """Known positioning: median corner error <= 1 px at 1152x896 (acceptance)."""
    errors = []
    for fixed, moving, fm, mm, truth in full_pairs:
        reg = rg.register_pair(fixed, moving, fm, mm)
        errors.append(rg.corner_error(reg.transform, truth, FULL))
        assert reg.moved.dtype == np.uint16 and reg.moved.shape == FULL
        assert reg.moved_mask.dtype == bool
        assert np.array_equal(reg.moved > 0, reg.moved_mask)
        assert reg.dice_after > max(reg.dice_before, 0.97)
        assert reg.ncc_after > 0.9
        assert rg.passes_quality(reg) == (True, "ok")
    assert float(np.median(errors)) <= 1.0, errors


def test_deterministic_on_one_thread(full_pairs):
    fixed, moving, fm, mm, _ = full_pairs[0]
    a = rg.register_pair(fixed, moving, fm, mm, threads=1, seed=3)
    b = rg.register_pair(fixed, moving, fm, mm, threads=1, seed=3)
    assert a.transform == b.transform
    assert np.array_equal(a.moved, b.moved) and np.array_equal(a.moved_mask, b.moved_mask)
    json.dumps(a.transform)    # serialisable


def test_affine_and_roundtrip(full_pairs):
    fixed, moving, fm, mm, truth = full_pairs[1]
    reg = rg.register_pair(fixed, moving, fm, mm, transform="affine")
    assert reg.transform["type"] == "AffineTransform"
    assert rg.corner_error(reg.transform, truth, FULL) < 2.0
    tx = rg.transform_from_dict(reg.transform)
    assert tx.GetParameters() == pytest.approx(reg.transform["parameters"])


def test_map_boxes_to_fixed_inverts_known_shift():
    truth = sitk.Euler2DTransform()
    truth.SetTranslation((7.0, -3.0))   # fixed point p sits at p + (7, -3) in the moving image
    boxes = rg.map_boxes_to_fixed(rg.transform_to_dict(truth), [[20, 30, 40, 60]])
    np.testing.assert_allclose(boxes, [[23, 23, 43, 53]], atol=1e-9)


def test_quality_rejects_a_mismatch():
    a, am = phantom((288, 224), seed=0)
    b, bm = phantom((288, 224), seed=5)
    b = np.where(bm, 1.0 - b, 0)           # contrast inverted inside the breast
    bm = bm.copy()
    bm[:, 100:] = False                    # and a much smaller breast
    reg = rg.register_pair(to_uint16(a, am), to_uint16(b, bm), am, bm)
    ok, reason = rg.passes_quality(reg)
    assert not ok and ("dice_after" in reason or "ncc_after" in reason)
    ok, _ = rg.passes_quality(reg, {"dice_after": 0.0, "ncc_after": -1.0})
    assert ok


def test_choose_fixed():
    assert rg.choose_fixed(True, False) == "left"
    assert rg.choose_fixed(False, True) == "right"
    assert rg.choose_fixed(False, False) == "left"
    assert rg.choose_fixed(True, True, 10.0, 20.0) == "right"
    assert rg.choose_fixed(True, True, 20.0, 10.0) == "left"
    assert rg.choose_fixed(True, True, 5.0, 5.0) == "left"


def test_bad_inputs():
    a = np.zeros((64, 48), np.uint16)
    m = np.ones((64, 48), bool)
    with pytest.raises(ValueError, match="shape"):
        rg.register_pair(a, np.zeros((64, 40), np.uint16), m, m[:, :40])
    with pytest.raises(ValueError, match="empty"):
        rg.register_pair(a, a, m, np.zeros_like(m))
    with pytest.raises(ValueError, match="multiples"):
        rg.register_pair(a, a, m, m, shrink=(3, 2))


def test_reduce_keeps_physical_coordinates():
    arr = np.arange(16, dtype=np.float32).reshape(4, 4)
    img = rg.reduce(arr, 2)
    assert img.GetSize() == (2, 2)
    # block (0, 0) holds pixels 0..1 in x and y; its centre is at physical (0.5, 0.5)
    assert img.TransformIndexToPhysicalPoint((0, 0)) == (0.5, 0.5)
    assert img[0, 0] == pytest.approx(arr[:2, :2].mean())


def test_bench_command_runs(capsys):
    from ingest import register_bench

    rows = register_bench.run(1, (144, 112), 1, configs={"naive full-res 100%": dict(shrink=(1,), sampling=1.0, iterations=20),
                                                          "default 8/4 10%": dict(shrink=(2, 1))})
    assert [r["config"] for r in rows] == ["naive full-res 100%", "default 8/4 10%"]
    assert rows[0]["speedup"] == 1.0 and rows[1]["seconds"] > 0


def test_defaults_come_from_register_params():
    """Every setting of register_pair but ``threads`` is a RegisterParams field with its default,
    so the cache key (asdict of RegisterParams) covers all of them."""
    import dataclasses
    import inspect

    from ingest.params import RegisterParams

    params = {name: p.default for name, p in inspect.signature(rg.register_pair).parameters.items()
              if p.kind is p.KEYWORD_ONLY and name != "threads"}
    assert params == dataclasses.asdict(RegisterParams())


# Generated exams at a quarter of 1152x896 (fast); the pyramid and the band-pass scale with the
# image (the RegisterParams defaults are sized for 1152x896), and so do pixel errors: 1 px at
# full size is 0.25 px here.
SMALL = (288, 224)
QUARTER = dict(shrink=(4, 2), band=(3.0, 15.0))


@pytest.fixture(scope="module")
def small_exam_errors():
    """Median-corner errors (px at SMALL) of the default and the previous default on the CC and
    MLO left/right pairs of two generated exams, against the generator's ground truth."""
    from ingest.register_truth import PREVIOUS, exam_pairs

    errors = {"default": [], "previous": []}
    for left, right, truth in exam_pairs(2, SMALL, seed=0):
        reg = rg.register_pair(left.pixels, right.pixels, left.mask, right.mask, **QUARTER)
        assert reg.transform["type"] == "Similarity2DTransform"
        assert reg.dice_after > 0.9 and rg.passes_quality(reg)[0]
        errors["default"].append(rg.corner_error(reg.transform, truth, SMALL))
        old = rg.register_pair(left.pixels, right.pixels, left.mask, right.mask,
                               **{**PREVIOUS, "shrink": (2, 1)})
        errors["previous"].append(rg.corner_error(old.transform, truth, SMALL))
    return errors


def test_generated_exams_left_right(small_exam_errors):
    """Left/right pairs of generated exams (2 patients, CC and MLO) at a quarter of 1152x896:
    median corner error <= 2.5 px here (10 px at full size) and at least 3x better than the
    previous default (rigid, raw intensities). The two breasts share only their low-frequency
    tissue, so this is the realistic bound (docs/ingest-pixels.md, "Accuracy")."""
    default = float(np.median(small_exam_errors["default"]))
    previous = float(np.median(small_exam_errors["previous"]))
    assert default <= 2.5, small_exam_errors
    assert previous >= 3 * default, small_exam_errors


def test_generated_breast_repositioned_at_full_size():
    """A generated breast and a copy of it under a known similarity (the generator's positioning
    range: 4 degrees, scale 1.045, shift) with its own detector noise: <= 1 px at 1152x896."""
    from ingest.register_truth import exam_pairs, warp

    left, _, _ = next(exam_pairs(1, FULL, seed=3))
    truth = sitk.Similarity2DTransform()
    truth.SetCenter((0.0, FULL[0] / 2))
    truth.SetAngle(float(np.deg2rad(4.0)))
    truth.SetScale(1.045)
    truth.SetTranslation((-12.0, 25.0))
    truth = rg.transform_to_dict(truth)
    # fixed = the breast seen through truth: registering the original onto it recovers truth
    fixed = warp(left.pixels.astype(np.float32), truth)
    fixed_mask = warp(left.mask.astype(np.float32), truth, order=0) > 0.5
    rng = np.random.default_rng(0)
    noisy = fixed + 300 * rng.standard_normal(FULL).astype(np.float32)
    fixed = np.where(fixed_mask, np.clip(noisy, 1, 65535), 0).astype(np.uint16)
    reg = rg.register_pair(fixed, left.pixels, fixed_mask, left.mask)
    assert rg.corner_error(reg.transform, truth, FULL) <= 1.0


def test_bench_exam_report_sets_side_by_side(capsys):
    from ingest import register_bench

    configs = {"naive: previous default": {**register_bench.PREVIOUS, "shrink": (2, 1)},
               "default": QUARTER}
    results = register_bench.exam_report(1, SMALL, 1, configs=configs)
    assert list(results) == ["positioning-only", "realistic"]
    rows = {v: {r["config"]: r for r in results[v][0]} for v in results}
    # Identical sides under known positioning: far more accurate than realistic sides.
    assert rows["positioning-only"]["default"]["corner_px"] < 0.5
    assert rows["positioning-only"]["default"]["corner_px"] < rows["realistic"]["default"]["corner_px"]
    out = capsys.readouterr().out
    assert "truth check, positioning-only" in out and "truth check, realistic" in out
    # The acceptance figure is printed, not asserted: the realistic pairs do not meet it today.
    line = next(s for s in out.splitlines() if s.startswith("acceptance, default"))
    assert "positioning-only" in line and "realistic" in line
    assert f"{rows['realistic']['default']['corner_px']:.2f} px" in line
