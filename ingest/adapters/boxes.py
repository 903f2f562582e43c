"""Checking annotation tables and boxes, so that no annotation is dropped or bent without a word.

A table without a column the adapter needs is an error naming the file and the column (never a
per-row "value=None"). A box that cannot be used (a cell that is not a number, a missing
coordinate, an empty or inverted box, a box wholly outside the image) is a problem with a named
reason: the adapter rejects the image it belongs to, since a lesion whose place is unknown would
otherwise make its patches look normal. A box that reaches past the image is clipped to it and the
clipping is reported, so the report says which annotations were changed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def require_columns(columns, needed, where) -> None:
    """Raise ``ValueError`` naming ``where`` and every column of ``needed`` not in ``columns``."""
    missing = [c for c in needed if c not in set(columns)]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise ValueError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {names} "
                         f"(found: {', '.join(map(str, columns)) or 'none'})")


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


@dataclass(frozen=True)
class BoxCheck:
    """The outcome of checking one box: ``box`` (x0, y0, x1, y1) to use, or a ``problem``.

    ``box`` and ``problem`` are both None for a row without a box (all cells empty: a finding
    without a place, e.g. "No Finding"). ``clipped`` says what clipping changed, when it did.
    """

    box: tuple[float, float, float, float] | None = None
    problem: str | None = None          # reason class: "bad box", "empty box", ...
    detail: str = ""
    clipped: str = ""


def check_box(cells: dict, names: tuple[str, str, str, str], where: str,
              image_size: tuple[float, float] | None = None) -> BoxCheck:
    """Check the box of one annotation row.

    ``cells`` maps the column (or key) names ``names`` = (x0, y0, x1, y1) to their raw values;
    ``where`` names the row (``"finding_annotations.csv line 7"``) for every message;
    ``image_size`` = (height, width) when the table knows it, to clip the box to the image.
    """
    raw = [cells.get(n) for n in names]
    if all(_blank(v) for v in raw):
        return BoxCheck()
    values = []
    for name, value in zip(names, raw):
        if _blank(value):
            return BoxCheck(problem="bad box", detail=f"{where}: {name} is empty")
        try:
            number = float(str(value).strip())
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            return BoxCheck(problem="bad box", detail=f"{where}: {name}={value!r} is not a number")
        values.append(number)
    x0, y0, x1, y1 = values
    text = f"({', '.join(f'{n}={v:g}' for n, v in zip(names, values))})"
    if x1 < x0 or y1 < y0:
        return BoxCheck(problem="inverted box", detail=f"{where}: end before start {text}")
    if x1 == x0 or y1 == y0:
        return BoxCheck(problem="empty box", detail=f"{where}: zero width or height {text}")
    if image_size is None:
        return BoxCheck(box=(x0, y0, x1, y1))
    h, w = image_size
    cx0, cy0, cx1, cy1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
    if cx1 <= cx0 or cy1 <= cy0:
        return BoxCheck(problem="box outside the image",
                        detail=f"{where}: {text} lies outside the {h:g}x{w:g} image")
    box = (cx0, cy0, cx1, cy1)
    if box == (x0, y0, x1, y1):
        return BoxCheck(box=box)
    return BoxCheck(box=box, clipped=f"{where}: {text} clipped to the {h:g}x{w:g} image: "
                                     f"({', '.join(f'{v:g}' for v in box)})")


def image_size(height, width) -> tuple[float, float] | None:
    """(height, width) from two table cells, or None when either is missing or not positive."""
    try:
        h, w = float(height), float(width)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(h) and math.isfinite(w)) or h <= 0 or w <= 0:
        return None
    return h, w
