"""Checks shared by the loader tests."""
from __future__ import annotations


def real_keys(batches) -> list[str]:
    """Sample keys of a run of batches, padding slots (``is_pad``) left out."""
    return [k for b in batches for k, pad in zip(b["key"], b["is_pad"].tolist()) if not pad]
