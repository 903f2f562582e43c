"""Small sets: no split left empty with three patients or more; fewer patients are reported."""
from __future__ import annotations

import random

from ingest.adapters.table import ExamImage, ExamTable
from ingest.packing import build_index, patients_with_tiles
from ingest.pairing import pair_exams
from ingest.report import Report, summary
from ingest.splits import SPLITS, assign_split, plan_splits


def _ids_all_in(split: str, n: int, seed: int = 0) -> list[str]:
    found = []
    i = 0
    while len(found) < n:
        key = f"patient-{i}"
        if assign_split(key, seed) == split:
            found.append(key)
        i += 1
    return found


def test_six_patients_without_val_get_a_val_patient():
    # The case: six patients whose hashes give train and test but no val.
    ids = _ids_all_in("train", 5) + _ids_all_in("test", 1)
    assert {assign_split(p) for p in ids} == {"train", "test"}
    plan = plan_splits(ids)
    assert all(plan.counts[s] >= 1 for s in SPLITS)
    assert len(plan.moved) == 1 and plan.moved[0][2] == "val"
    assert "val" in plan.note


def test_three_patients_fill_three_splits():
    ids = _ids_all_in("train", 3)
    plan = plan_splits(ids)
    assert sorted(plan.of.values()) == ["test", "train", "val"]
    assert plan_splits(list(reversed(ids))).of == plan.of        # order does not matter


def test_fewer_patients_than_splits_is_said():
    ids = _ids_all_in("train", 2)
    plan = plan_splits(ids)
    assert plan.counts == {"train": 2, "val": 0, "test": 0}
    assert "2 patient(s) for 3 splits" in plan.note and "val, test left empty" in plan.note
    rep = Report(params={})
    rep.splits(plan, "patients")
    assert rep.data["splits"]["note"] == plan.note
    assert "splits: 2 patient(s) for 3 splits" in summary(rep.finish())


def test_a_set_with_every_split_is_never_changed():
    rng = random.Random(5)
    checked = 0
    for trial in range(300):
        ids = [f"p{rng.randrange(10**9)}" for _ in range(rng.randrange(3, 40))]
        hashed = {p: assign_split(p, trial % 3) for p in ids}
        if set(hashed.values()) != set(SPLITS):
            continue
        plan = plan_splits(ids, trial % 3)
        assert plan.of == hashed and not plan.moved and not plan.note
        checked += 1
    assert checked > 50


def test_build_index_gives_every_split_a_patient():
    ids = _ids_all_in("train", 4)
    tiled = [(p, {"rows": [(f"pair-{p}", f"e-{p}", 0, 0, 0, 0, 0.1, 0.1, 0.0, 0.0, 0.0)]})
             for p in ids]
    assert patients_with_tiles(tiled) == sorted(ids)
    index = build_index(tiled, seed=0)
    assert set(index["split"]) == set(SPLITS)


def test_colliding_patient_ids_are_reported_not_fatal():
    def img(patient, view, lat):
        return ExamImage(dataset="d", patient=patient, study="S", view=view, laterality=lat,
                         path=f"/x/{patient}-{view}{lat}.dcm", image_id=f"{patient}{view}{lat}")

    table = ExamTable("d", images=[img(p, v, l) for p in ("P.1", "P-1", "Q")
                                   for v in ("CC", "MLO") for l in ("L", "R")])
    pairs, unpaired = pair_exams(table)
    assert len(pairs) == 4 and len({p.pair_id for p in pairs}) == 4
    collisions = [s for s in unpaired if s.reason == "pair id collision"]
    assert len(collisions) == 4
    assert {p.patient for p in pairs} == {"P-1", "Q"}       # the first id in order is kept
    assert all("P.1" in s.detail for s in collisions)
