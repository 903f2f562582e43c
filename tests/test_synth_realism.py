"""Realism of the synthetic mammograms: texture spectrum, bilateral likeness, lesions in their boxes."""
import dataclasses

import numpy as np
from scipy.ndimage import binary_erosion

from scipy.ndimage import affine_transform

from ingest.synth import plan_patient, power_law_field, power_spectrum_slope, render_image, to_breast_frame
from ingest.synth.positioning import pair_matrix


def _attenuation(img):
    """Stored pixels as float, bright = dense whatever the photometric interpretation."""
    px = img.pixels.astype(np.float32)
    if img.record["photometric"] == "MONOCHROME1":
        px = (2 ** img.record["bits_stored"] - 1) - px
    return px


def test_power_law_field_has_the_requested_slope():
    rng = np.random.default_rng(0)
    for beta in (2.5, 3.0, 3.5):
        slopes = [power_spectrum_slope(power_law_field(rng, (512, 512), beta)) for _ in range(3)]
        assert abs(np.median(slopes) - beta) < 0.2


def test_rendered_tissue_slope_in_range():
    # A 512x512 crop of tissue well inside a CC view, with detector noise and quantisation.
    found = []
    for index in range(12):
        plan = plan_patient(3, index, image_size=(1536, 1200), lesion_fraction=0.0, studies_per_patient=(1, 1))
        img = render_image(plan, 0, "L", "CC")
        mask = binary_erosion(img.mask[::8, ::8], iterations=4)
        rows, cols = np.nonzero(mask)
        r0 = int(np.median(rows) * 8) - 256
        c0 = 40
        crop = np.s_[r0:r0 + 512, c0:c0 + 512]
        if not img.mask[crop].all():
            continue
        found.append((plan.beta, power_spectrum_slope(_attenuation(img)[crop])))
        if len(found) == 5:
            break
    assert len(found) == 5
    for beta, slope in found:
        assert 2.5 <= slope <= 3.5, (beta, slope)


def _frame(img):
    rec = img.record
    data = to_breast_frame(_attenuation(img), rec["transform"], rec["mirrored"])
    mask = to_breast_frame(img.mask.astype(np.float32), rec["transform"], rec["mirrored"]) > 0.99
    return data, mask


def _corr(a, ma, b, mb, erode=25):
    m = binary_erosion(ma & mb, iterations=erode)
    assert m.sum() > 2000
    return float(np.corrcoef(a[m], b[m])[0, 1])


def test_normal_pair_is_alike_after_known_alignment():
    size = (384, 288)
    plans = [plan_patient(5, i, image_size=size, lesion_fraction=0.0, studies_per_patient=(1, 1))
             for i in range(4)]
    for view in ("CC", "MLO"):
        frames = [(_frame(render_image(p, 0, "L", view)), _frame(render_image(p, 0, "R", view))) for p in plans]
        same = [_corr(*l, *r) for l, r in frames]
        other = [_corr(*frames[i][0], *frames[(i + 1) % 4][1]) for i in range(4)]
        assert min(same) > 0.6, same
        assert min(same) > max(other) + 0.2, (same, other)


def test_lesion_lies_in_its_box():
    size = (512, 384)
    checked = {"mass": 0, "calcification": 0}
    for index in range(40):
        plan = plan_patient(9, index, image_size=size, lesion_fraction=1.0, studies_per_patient=(1, 1))
        side = plan.lesion_side
        img = render_image(plan, 0, side, "CC")
        if not img.record["lesions"]:
            continue
        clean = render_image(dataclasses.replace(plan, lesion=None), 0, side, "CC")
        diff = _attenuation(img) - _attenuation(clean)
        x0, y0, x1, y1 = img.record["lesions"][0]["box"]
        inside = np.zeros(diff.shape, bool)
        inside[y0:y1, x0:x1] = True
        assert np.abs(diff[~inside]).max() == 0            # nothing changed outside the box
        assert diff[inside].max() > 0
        # Brighter inside the box than in a ring around it.
        px = _attenuation(img)
        pad = max(4, (x1 - x0) // 2)
        ring = np.zeros_like(inside)
        ring[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = True
        ring &= ~inside & img.mask
        core = np.zeros_like(inside)
        hy, hx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
        core[y0 + hy:y1 - hy, x0 + hx:x1 - hx] = True
        kind = img.record["lesions"][0]["type"]
        if kind == "mass":
            assert px[core].mean() > px[ring].mean()
        else:
            assert px[inside].max() > np.percentile(px[ring], 99)
        checked[kind] += 1
        if min(checked.values()) >= 2:
            break
    assert min(checked.values()) >= 2, checked


def test_pair_matrix_registers_right_onto_left():
    plan = plan_patient(8, 1, image_size=(384, 288), lesion_fraction=0.0, studies_per_patient=(1, 1))
    left, right = render_image(plan, 0, "L", "MLO"), render_image(plan, 0, "R", "MLO")
    fixed, moving = _attenuation(left), _attenuation(right)[:, ::-1]       # un-mirror the right side
    m = pair_matrix(left.record, right.record)
    moved = affine_transform(moving, m[:2, :2], offset=m[:2, 2], order=1)
    moved_mask = affine_transform(right.mask[:, ::-1].astype(np.float32), m[:2, :2], offset=m[:2, 2]) > 0.99
    aligned = _corr(fixed, left.mask, moved, moved_mask)
    unaligned = _corr(fixed, left.mask, moving, right.mask[:, ::-1])
    assert aligned > 0.6 and aligned > unaligned + 0.05, (aligned, unaligned)


def test_positioning_only_pair_is_one_breast():
    """pair_variation="positioning-only": brought to their breast frames, the two sides are the
    same breast (same outline and compression, same texture), far closer than a realistic pair;
    the positioning itself still differs, and the default plan is untouched."""
    size = (384, 288)
    for index in range(2):
        same = plan_patient(5, index, image_size=size, lesion_fraction=0.0, studies_per_patient=(1, 1),
                            pair_variation="positioning-only")
        real = plan_patient(5, index, image_size=size, lesion_fraction=0.0, studies_per_patient=(1, 1))
        assert real.shapes["CC"]["R"] != real.shapes["CC"]["L"]
        assert same.shapes["CC"]["R"] == same.shapes["CC"]["L"] == real.shapes["CC"]["L"]
        for view in ("CC", "MLO"):
            left, right = render_image(same, 0, "L", view), render_image(same, 0, "R", view)
            tl, tr = left.record["transform"], right.record["transform"]
            assert tl["compression"] == tr["compression"]
            assert tl["rotation_deg"] != tr["rotation_deg"] and tl["shift_px"] != tr["shift_px"]
            alike = _corr(*_frame(left), *_frame(right))
            realistic = _corr(*_frame(render_image(real, 0, "L", view)),
                              *_frame(render_image(real, 0, "R", view)))
            assert alike > 0.98 and alike > realistic + 0.03, (alike, realistic)


def test_pair_variation_is_checked():
    import pytest

    with pytest.raises(ValueError, match="pair_variation"):
        plan_patient(0, 0, image_size=(128, 96), pair_variation="identical")
