"""Writing the layouts' text files: atomically (never half-written), CSV as the real sets have it."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from shards import publish


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (never half-written), making its folder first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    publish.write_text(path, text, fsync_dir=False)


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def csv_text(columns: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow(row)
    return buf.getvalue()
