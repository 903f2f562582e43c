"""Deterministic train/val/test splits from a hash (never Python's ``hash``, which is salted).

A key is hashed with SHA-256 together with the seed and a namespace (``patient`` or ``patch``),
the first 8 bytes become a number u in [0, 1), and u falls into the split whose share of the
ratios covers it. The same key, seed and ratios give the same split on every machine and run;
patient-level splits keep all images of a patient in one split. The patch namespace is separate
so that the downstream patch-level split is not correlated with the patient split.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

SPLITS = ("train", "val", "test")


def unit_hash(key: str, seed: int = 0, namespace: str = "patient") -> float:
    """A uniform number in [0, 1) determined by the key, the seed and the namespace."""
    digest = hashlib.sha256(f"{namespace}\x1f{int(seed)}\x1f{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_of(u: float, ratios=(8, 1, 1)) -> str:
    if len(ratios) != len(SPLITS) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers with a positive sum, got {ratios}")
    total = float(sum(ratios))
    edge = 0.0
    for name, r in zip(SPLITS, ratios):
        edge += r / total
        if u < edge:
            return name
    return next(name for name, r in zip(reversed(SPLITS), reversed(ratios)) if r > 0)


def assign_split(patient_id: str, seed: int = 0, ratios=(8, 1, 1)) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a patient (all their exams follow)."""
    return split_of(unit_hash(str(patient_id), seed, "patient"), ratios)


def patch_split(key: str, seed: int = 0, ratios=(8, 1, 1)) -> str:
    """The split of one downstream labelled patch (a patch-level split, as in the paper)."""
    return split_of(unit_hash(str(key), seed, "patch"), ratios)


@dataclass(frozen=True)
class SplitPlan:
    """The split of every key (patient or patch), how many each split got, and what to say."""

    of: dict[str, str]
    counts: dict[str, int]
    moved: tuple[tuple[str, str, str], ...] = ()    # (key, from split, to split)
    note: str = ""                                  # for the summary and the report; "" when fine


def _interval(split: str, ratios) -> tuple[float, float]:
    total = float(sum(ratios))
    lo = 0.0
    for name, r in zip(SPLITS, ratios):
        hi = lo + r / total
        if name == split:
            return lo, hi
        lo = hi
    raise ValueError(split)


def plan_splits(keys, seed: int = 0, ratios=(8, 1, 1), namespace: str = "patient",
                unit: str = "patient") -> SplitPlan:
    """The hash split of ``keys``, with no split left empty when there are enough keys.

    Each key goes where its hash falls (``split_of``), exactly as ``assign_split``. Only when a
    split with a positive ratio is empty and there are at least as many keys as such splits is a
    key moved into it: the key, among splits that keep at least one, whose hash lies nearest to
    the empty split's share (ties by key). A set that already has every split is never changed.
    With fewer keys than splits, the empty splits stay empty and the note says so.
    """
    keys = sorted({str(k) for k in keys})
    u = {k: unit_hash(k, seed, namespace) for k in keys}
    of = {k: split_of(u[k], ratios) for k in keys}
    needed = [name for name, r in zip(SPLITS, ratios) if r > 0]

    def counts() -> dict[str, int]:
        return {name: sum(1 for v in of.values() if v == name) for name in SPLITS}

    empty = [name for name in needed if counts()[name] == 0]
    if not empty or not keys:
        note = "" if keys else f"no {unit}s: every split is empty"
        return SplitPlan(of=of, counts=counts(), note=note)
    if len(keys) < len(needed):
        return SplitPlan(of=of, counts=counts(), note=(
            f"{len(keys)} {unit}(s) for {len(needed)} splits: {', '.join(empty)} left empty "
            f"(at least {len(needed)} {unit}s give every split one)"))
    moved = []
    for target in empty:
        lo, hi = _interval(target, ratios)
        size = counts()
        candidates = [k for k in keys if size[of[k]] > 1]
        key = min(candidates, key=lambda k: (min(abs(u[k] - lo), abs(u[k] - hi)), k))
        moved.append((key, of[key], target))
        of[key] = target
    note = (f"{len(keys)} {unit}s left {', '.join(empty)} empty by hash: moved "
            + ", ".join(f"{k} ({a} -> {b})" for k, a, b in moved))
    return SplitPlan(of=of, counts=counts(), moved=tuple(moved), note=note)
