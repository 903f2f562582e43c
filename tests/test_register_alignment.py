"""Registration never makes a pair worse than not registering it, and never leaves empty wedges
inside the breast: what comes from outside the moving image is background."""
from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ingest import register as rg
from ingest.phantom import phantom, to_uint16
from ingest.register_truth import warp
from ingest.report import Report
from ingest.tiling import tile_pair

SHAPE = (576, 448)


def test_pair_that_registration_would_worsen_keeps_its_initial_alignment():
    """Two unrelated breasts (the sides differ strongly): the tissue metric pulls the moving one
    far off to fit noise (Dice 0.92 -> 0.61 here); the pair as it came is kept, and it passes the
    quality thresholds, so it is used."""
    a, am = phantom(SHAPE, seed=1)
    b, bm = phantom(SHAPE, seed=101)
    fixed, moving = to_uint16(a, am), to_uint16(b, bm)
    reg = rg.register_pair(fixed, moving, am, bm)
    assert reg.alignment == "initial"
    assert rg.alignment_score(reg.dice_registered, reg.tissue_registered) < \
        rg.alignment_score(reg.dice_before, reg.tissue_before)
    assert reg.dice_registered < reg.dice_before - 0.1          # registering would have hurt
    np.testing.assert_array_equal(reg.moved, moving)
    np.testing.assert_array_equal(reg.moved_mask, bm)
    assert reg.dice_after == reg.dice_before and reg.ncc_after == reg.ncc_before
    identity = rg.transform_from_dict(reg.transform)
    np.testing.assert_allclose(identity.TransformPoint((10.0, 20.0)), (10.0, 20.0))
    ok, why = rg.passes_quality(reg)
    assert ok, why
    quality = reg.quality()
    assert quality["alignment"] == "initial"
    rep = Report({})
    rep.pair_prepared({"status": "registered", "quality": quality})
    rep.pair_prepared({"status": "cached", "quality": {**quality, "alignment": "registered"}})
    assert rep.data["pairs"]["alignment"] == {"initial": 1, "registered": 1}


def test_registration_kept_when_it_helps():
    """A breast repositioned by a known rotation and shift: registering wins and is kept."""
    a, am = phantom(SHAPE, seed=2)
    truth = sitk.Similarity2DTransform()
    truth.SetCenter((SHAPE[1] / 2, SHAPE[0] / 2))
    truth.SetAngle(0.06)
    truth.SetTranslation((6.0, -10.0))
    t = rg.transform_to_dict(truth)
    fixed = to_uint16(a, am)
    moving_mask = warp(am.astype(np.float32), t, order=0) > 0.5
    moving = np.where(moving_mask, np.maximum(warp(fixed.astype(np.float32), t), 1), 0).astype(np.uint16)
    reg = rg.register_pair(fixed, moving, am, moving_mask)
    assert reg.alignment == "registered"
    assert reg.dice_after > reg.dice_before and reg.tissue_after > reg.tissue_before


def _outside_field_of_view(transform: dict, shape) -> np.ndarray:
    """Fixed-grid pixels whose point maps outside the moving image."""
    h, w = shape
    tx = rg.transform_from_dict(transform)
    yy, xx = np.mgrid[0:h, 0:w]
    pts = rg.map_points(tx, np.stack([xx.ravel(), yy.ravel()], axis=1).astype(float))
    out = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
    return out.reshape(h, w)


def test_no_empty_wedge_inside_the_breast():
    """The moving breast was rotated about the image centre, so registering it back maps part
    of the chest-wall edge to points outside the moving image: that wedge is background in the
    moved mask, and no tile is cut mostly from it."""
    a, am = phantom(SHAPE, seed=3)
    fixed = to_uint16(a, am)
    tilt = sitk.Similarity2DTransform()
    tilt.SetCenter((SHAPE[1] / 2, SHAPE[0] / 2))
    tilt.SetAngle(-0.1)
    t = rg.transform_to_dict(tilt)
    moving_mask = warp(am.astype(np.float32), t, order=0) > 0.5
    moving = np.where(moving_mask, np.maximum(warp(fixed.astype(np.float32), t), 1), 0).astype(np.uint16)
    reg = rg.register_pair(fixed, moving, am, moving_mask)
    assert reg.alignment == "registered"
    outside = _outside_field_of_view(reg.transform, SHAPE)
    wedge = outside & am
    assert wedge.sum() > 500                          # the wedge exists, inside the fixed breast
    assert not reg.moved_mask[outside].any()          # and is background on the moved side
    assert (reg.moved[outside] == 0).all()
    tiles = tile_pair(fixed, reg.moved, am, reg.moved_mask, size=32)
    for y0, x0, y1, x1 in tiles.boxes:
        assert outside[y0:y1, x0:x1].mean() <= 0.2    # the border rule's limit: no empty tiles
    assert tiles.dropped["background"] + tiles.dropped["border"] > 0
