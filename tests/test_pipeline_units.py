"""Pairing, the pair cache, shard plans and the report, without a cluster."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from ingest.adapters.table import ExamImage, ExamTable, Skip
from ingest.cache import PairCache, PairRecord, TileReader
from ingest.packing import INDEX_COLUMNS, build_index, plan_shards, remove_stale_shards
from ingest.pairing import pair_exams
from ingest.report import Report


def _img(patient, study, view, lat, image_id):
    return ExamImage(dataset="d", patient=patient, study=study, view=view, laterality=lat,
                     path=f"/x/{image_id}.dcm", image_id=image_id)


def test_pairing_reports_lone_and_duplicate_images():
    table = ExamTable("d", images=[
        _img("p1", "s.1", "CC", "L", "a"), _img("p1", "s.1", "CC", "R", "b"),
        _img("p1", "s.1", "MLO", "L", "c"),                                    # lone
        _img("p2", "s.2", "CC", "R", "e2"), _img("p2", "s.2", "CC", "R", "e1"),  # duplicate R
        _img("p2", "s.2", "CC", "L", "f"),
    ])
    pairs, unpaired = pair_exams(table)
    assert [p.pair_id for p in pairs] == ["d_p1_s-1_CC", "d_p2_s-2_CC"]
    assert pairs[1].right.image_id == "e1"          # first by image id, whatever the order
    assert sorted((s.reason, s.item) for s in unpaired) == [
        ("duplicate image", "/x/e2.dcm"), ("missing contralateral image", "/x/c.dcm")]
    # Listing order does not change the result.
    again, _ = pair_exams(ExamTable("d", images=list(reversed(table.images))))
    assert [(p.left, p.right) for p in again] == [(p.left, p.right) for p in pairs]


def test_cache_write_is_atomic_and_keyed(tmp_path):
    cache = PairCache(tmp_path, {"out_shape": [300, 200]})
    other = PairCache(tmp_path, {"out_shape": [400, 200]})
    assert cache.root != other.root
    name = cache.entry_name("pair_1", {"left": 1})
    assert name != cache.entry_name("pair_1", {"left": 2})
    pixels = np.arange(2 * 300 * 200, dtype=np.uint16).reshape(2, 300, 200)
    masks = np.zeros((2, 300, 200), bool)
    masks[:, 50:250, :150] = True
    assert not cache.has(name)
    cache.write(name, pixels, masks, {"pair_id": "pair_1"})
    assert cache.has(name) and cache.attrs(name) == {"pair_id": "pair_1"}
    got, got_masks = cache.read_pair(name)
    assert np.array_equal(got, pixels) and np.array_equal(got_masks, masks)
    tile = TileReader(cache).read(name, (96, 96, 192, 192))
    assert np.array_equal(tile, pixels[:, 96:192, 96:192])
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".")]


def test_cache_write_failure_leaves_nothing(tmp_path):
    cache = PairCache(tmp_path, {})
    with pytest.raises(TypeError):
        cache.write("bad", np.zeros((2, 8, 8), np.uint16), np.zeros((2, 8, 8), bool),
                    {"not json": object()})
    assert not cache.has("bad") and list(cache.root.iterdir()) == []


def test_pair_record_round_trip(tmp_path):
    cache = PairCache(tmp_path, {})
    record = PairRecord(
        pair_id="p_1_CC", dataset="d", patient="p", study="1", view="CC", registered_side="right",
        source={"left": "a", "right": "b"}, rois={"left": [[1.5, 2, 30, 40, "mass"]], "right": []},
        quality={"dice_after": 0.9}, transform={"type": "Euler2DTransform"}, shape=(8, 8),
        geometry={}, roi_info={"left": [{"birads": None, "outcome": "benign"}], "right": []},
        birads={"left": "4", "right": "1"}, outcome=None)
    cache.write_record("e", np.zeros((2, 8, 8), np.uint16), np.zeros((2, 8, 8), bool), record)
    back = cache.record("e")
    assert back == PairRecord.from_attrs(record.to_attrs()) and back.shape == [8, 8]
    assert cache.attrs("e")["pair_id"] == "p_1_CC" and back.bits == 16
    # An ROI without its own BI-RADS takes its breast's; the outcome is the ROI's own.
    assert back.labelled_rois("left") == [{"box": [1.5, 2, 30, 40], "label": "mass",
                                           "birads": "4", "outcome": "benign"}]


def _index(pairs=3, tiles=20, patients=("p0", "p1", "p2")):
    tiled = []
    for i in range(pairs):
        rows = [(f"pair{i}", f"pair{i}-h", r, c, r * 10, c * 10, 0.1, 0.2, 0.0, 0.0, 0.0)
                for r in range(tiles // 5) for c in range(5)]
        tiled.append((patients[i % len(patients)], {"rows": rows}))
    return tiled


def test_plans_are_deterministic_and_order_free():
    tiled = _index()
    plans = plan_shards(build_index(tiled, seed=3), seed=3, shard_size=7)
    shuffled = plan_shards(build_index(list(reversed(tiled)), seed=3), seed=3, shard_size=7)
    key = lambda plans: [(p["split"], p["index"], list(zip(p["rows"]["pair_id"], p["rows"]["row"],  # noqa: E731
                                                            p["rows"]["col"]))) for p in plans]
    assert key(plans) == key(shuffled)
    assert all(len(p["rows"]) <= 7 for p in plans)
    assert sum(len(p["rows"]) for p in plans) == 60
    other_seed = plan_shards(build_index(tiled, seed=4), seed=4, shard_size=7)
    assert key(other_seed) != key(plans)
    # Within a split the rows are a permutation, not the sorted order.
    for split in {p["split"] for p in plans}:
        rows = pd.concat([p["rows"] for p in plans if p["split"] == split])
        order = list(zip(rows["pair_id"], rows["row"], rows["col"]))
        assert order != sorted(order) or len(order) < 3
    assert list(build_index(tiled, seed=3).columns) == list(INDEX_COLUMNS) + ["split"]


def test_remove_stale_shards(tmp_path):
    for name in ("train-000000.tar", "train-000000.idx", "train-000001.tar", "train-000001.idx",
                 "val-000000.tar", "manifest.json", "notes.txt"):
        (tmp_path / name).write_text("x")
    previous = {"train-000000.tar", "train-000000.idx", "train-000001.tar", "train-000001.idx"}
    removed = remove_stale_shards(tmp_path, {"train-000000.tar"}, previous)
    assert removed == ["train-000001.idx", "train-000001.tar"]
    # val-000000.tar was never named by a manifest of ours: kept.
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "notes.txt", "train-000000.idx",
                                            "train-000000.tar", "val-000000.tar"]


def test_report_counts_add_up():
    rep = Report(params={})
    table = ExamTable("d", images=[_img("p", "s", v, l, f"{v}{l}") for v in ("CC", "MLO")
                                   for l in ("L", "R")] + [_img("p", "s", "CC", "L", "dup")],
                      skipped=[Skip("/x/bad.dcm", "unreadable")])
    rep.exams(table)
    pairs, unpaired = pair_exams(table)
    rep.pairing(pairs, unpaired)
    rep.pair_prepared({"status": "registered"})
    rep.pair_used(pairs[0], {"status": "registered"})
    rep.pair_prepared({"status": "cached"})
    rep.pair_rejected(pairs[1], "quality below threshold", "dice_after 0.5 < 0.85",
                      {"dice_after": 0.5})
    data = rep.finish()
    assert data["images"] == {"read": 6, "used": 2, "rejected": 4,
                              "reasons": {"duplicate image": 1, "quality below threshold": 2,
                                          "unreadable": 1}}
    assert data["counts_add_up"] is True
    assert data["pairs"] == {"formed": 2, "registered": 1, "from_cache": 1, "rejected": 1, "used": 1,
                             "alignment": {"registered": 2}}
