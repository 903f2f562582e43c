"""Generated exams with what real archives carry around the breast (``artefacts=True``): film
edges, scanner strips, collimation, markers, rulers, text. The generator reports where they are;
the breast mask must not overlap them, and no tile may be cut from them or from an empty wedge."""
import numpy as np
import pytest

from ingest import register as rg
from ingest.normalize import normalize_array
from ingest.register_truth import exam_pairs_with_artefacts, warp
from ingest.synth import IMAGE_ORDER, plan_patient, render_exam, render_image
from ingest.synth.layout_cbis import to_film
from ingest.tiling import tile_pair

SIZE = (384, 288)
BANDS = {"film_edge", "edge_strip", "collimation"}


def _unit(im, layout):
    """The stored image as the pipeline reads it: [0, 1], breast bright, padding mask."""
    rec = im.record
    if layout == "cbis-ddsm":
        return to_film(im.pixels, rec).astype(np.float32) / 65535.0, None
    unit = im.pixels.astype(np.float32) / (2 ** rec["bits_stored"] - 1)
    if rec["photometric"] == "MONOCHROME1":
        unit = 1.0 - unit
    padding = im.pixels == rec["padding_value"]
    return np.where(padding, 0.0, unit), padding


def test_off_by_default_and_deterministic():
    plan = plan_patient(3, 1, image_size=SIZE)
    assert plan.artefacts == "none"
    clean = render_image(plan, 0, "L", "MLO")
    assert clean.artefacts is None and "artefacts" not in clean.record
    film = plan_patient(3, 1, "cbis-ddsm", image_size=SIZE, artefacts=True)
    assert film.artefacts == "film"
    assert plan_patient(3, 1, "rsna", image_size=SIZE, artefacts=True).artefacts == "digital"
    a, b = render_image(film, 0, "L", "MLO"), render_image(film, 0, "L", "MLO")
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.artefacts, b.artefacts)
    assert a.record["artefacts"] == b.record["artefacts"]


@pytest.mark.parametrize("layout", ["cbis-ddsm", "vindr", "rsna"])
def test_mask_excludes_artefacts(layout):
    kinds, touching = set(), 0
    for index in range(3):
        _, studies = render_exam(11, index, image_size=SIZE, layout=layout,
                                 studies_per_patient=(1, 1), artefacts=True)
        for lat, view in IMAGE_ORDER:
            im = next(i for i in studies[0] if (i.record["laterality"], i.record["view"]) == (lat, view))
            rec = im.record
            kinds |= set(rec["artefacts"]["kinds"])
            assert not (im.mask & im.artefacts).any()                 # the truth: disjoint
            for x0, y0, x1, y1 in rec["artefacts"]["boxes"]:
                assert im.artefacts[y0:y1, x0:x1].any()
            grown = np.zeros_like(im.mask)
            grown[1:-1, 1:-1] = im.mask[:-2, 1:-1] | im.mask[2:, 1:-1] | im.mask[1:-1, :-2] | im.mask[1:-1, 2:]
            touching += bool((grown & im.artefacts).any())            # a band against the breast
            unit, padding = _unit(im, layout)
            norm = normalize_array(unit, padding, out_shape=SIZE)
            assert norm.flipped == rec["mirrored"], (index, lat, view, rec["artefacts"])
            flip = (lambda a: a[:, ::-1]) if norm.flipped else (lambda a: a)
            assert not (norm.mask & flip(im.artefacts)).any(), (index, lat, view, rec["artefacts"])
            assert (norm.pixels[flip(im.artefacts)] == 0).all()
            truth = flip(im.mask)
            dice = 2 * (norm.mask & truth).sum() / (norm.mask.sum() + truth.sum())
            assert dice > 0.95, (index, lat, view, dice)
    assert kinds & BANDS and {"marker", "text"} <= kinds
    assert touching > 0 or layout != "cbis-ddsm"     # film: a band joins an MLO breast


@pytest.mark.parametrize("layout", ["cbis-ddsm", "vindr"])
def test_no_tile_from_an_artefact_or_an_empty_wedge(layout):
    shape = (576, 448)
    pairs = list(exam_pairs_with_artefacts(2, shape, seed=11, layout=layout))
    seen = 0
    for left, right, _, arts in pairs:
        seen += int(arts["L"].any() or arts["R"].any())
        reg = rg.register_pair(left.pixels, right.pixels, left.mask, right.mask)
        moved_art = warp(arts["R"].astype(np.float32), reg.transform, order=0) > 0.5
        fov = warp(np.ones(shape, np.float32), reg.transform, order=0) > 0.5   # inside the moving image
        assert not (left.mask & arts["L"]).any() and not (reg.moved_mask & moved_art).any()
        assert not reg.moved_mask[~fov].any() and (reg.moved[~fov] == 0).all()
        tiles = tile_pair(left.pixels, reg.moved, left.mask, reg.moved_mask, size=32)
        assert len(tiles) > 0
        for y0, x0, y1, x1 in tiles.boxes:
            # What a tile shows of an artefact or of the outside of the field of view is 0
            # (background), and no more of it than the background rule allows.
            assert (left.pixels[y0:y1, x0:x1][arts["L"][y0:y1, x0:x1]] == 0).all()
            assert (reg.moved[y0:y1, x0:x1][moved_art[y0:y1, x0:x1]] == 0).all()
            for region in (arts["L"], moved_art, ~fov):
                assert region[y0:y1, x0:x1].mean() <= 0.5
    assert seen > 0
