"""Deterministic train/val/test splits from a hash (never Python's ``hash``, which is salted).

A key is hashed with SHA-256 together with the seed and a namespace (``patient`` or ``patch``),
the first 8 bytes become a number u in [0, 1), and u falls into the split whose share of the
ratios covers it. The same key, seed and ratios give the same split on every machine and run;
patient-level splits keep all images of a patient in one split. The patch namespace is separate
so that the downstream patch-level split is not correlated with the patient split.
"""
from __future__ import annotations

import hashlib

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
