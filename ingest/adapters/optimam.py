"""OPTIMAM / OMI-DB layout → exam table.

Expected under ``root``:

* ``images/<client>/<StudyUID>/<SOPUID>.dcm`` — the images;
* ``data/<client>/<StudyUID>/<SOPUID>.json`` — each image's DICOM header as JSON (the DICOM JSON
  model keyed by tags, or keyword → value); when missing, the DICOM file's own header is read;
* ``data/<client>/imagedb_<client>.json`` — STUDIES → series → image → marks, each mark a box
  ``X1, Y1, X2, Y2`` with lesion flags (``Mass``, ``SuspiciousCalcifications``, ...);
* ``data/<client>/nbss_<client>.json`` — episodes and the client's status (Normal, Benign,
  Malignant, Interval Cancer), used as the outcome.

The client id is the patient id. Laterality and view come from the header (ImageLaterality /
Laterality, ViewPosition / ViewCodeSequence) with the fallbacks of ``dicom_tags``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ingest.adapters import dicom_tags
from ingest.adapters.boxes import BoxCheck, check_box, image_size
from ingest.adapters.table import ExamImage, ExamTable, Roi, Skip, normalise_birads

DATASET = "optimam"
LESION_FLAGS = ("Mass", "SuspiciousCalcifications", "ArchitecturalDistortion", "FocalAsymmetry",
                "Asymmetry", "Calcification", "Distortion", "Lesion")
OUTCOMES = {"normal": "Normal", "benign": "Benign", "malignant": "Malignant",
            "interval cancer": "Interval Cancer", "interval": "Interval Cancer"}
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


class _Header(dict):
    """A keyword → value header with the ``.get`` used by ``dicom_tags``."""


def header_from_json(obj: dict):
    """DICOM JSON model (``{"00200062": {"vr": "CS", "Value": ["L"]}}``) or keyword dict → header."""
    if obj and all(_HEX_TAG.match(k) for k in obj):
        import pydicom

        return pydicom.Dataset.from_json(obj)
    return _Header(obj)


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "none", "n")
    return bool(value)


CORNERS = ("X1", "Y1", "X2", "Y2")


def _marks_of(node) -> list[dict]:
    """Every dict with any of X1, Y1, X2, Y2 under ``node`` (a mark missing one is reported)."""
    found = []
    if isinstance(node, dict):
        if any(k in node for k in CORNERS):
            found.append(node)
        else:
            for value in node.values():
                found.extend(_marks_of(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_marks_of(value))
    return found


def _index_by_uid(node, uids: set[str], out: dict) -> None:
    """Find the sub-tree of each image UID anywhere in the imagedb JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in uids:
                out.setdefault(key, []).append(value)
            else:
                _index_by_uid(value, uids, out)
    elif isinstance(node, list):
        for value in node:
            _index_by_uid(value, uids, out)


def mark_to_roi(mark: dict, client_outcome: str | None = None, where: str = "mark",
                image_size: tuple[float, float] | None = None):
    """A mark → ``(Roi, BoxCheck)``; the Roi is None when the check found a problem.

    X2/Y2 are the last pixel inside (inclusive): +1 gives the box's end edge. The two corners
    may come in either order (OMI-DB gives two corners, not a start and an end).
    A mark's outcome is Benign when it carries a BenignClassification, else the client's status
    when that is Malignant or Interval Cancer (the finding that made the cancer), else unknown.
    """
    cells = {k: mark.get(k) for k in CORNERS}
    probe = check_box(cells, CORNERS, where)     # cells present and numbers; order is free
    if probe.problem == "bad box":
        return None, probe
    if probe.problem is None and probe.box is None:
        return None, BoxCheck(problem="bad box", detail=f"{where}: X1, Y1, X2, Y2 are empty")
    x1, y1, x2, y2 = (float(mark[k]) for k in CORNERS)
    corners = {"X1": min(x1, x2), "Y1": min(y1, y2), "X2": max(x1, x2) + 1.0,
               "Y2": max(y1, y2) + 1.0}
    check = check_box(corners, CORNERS, where, image_size)
    if check.problem:
        return None, check
    labels = [flag for flag in LESION_FLAGS if _truthy(mark.get(flag))]
    if _truthy(mark.get("BenignClassification")):
        outcome = "Benign"
    elif client_outcome in ("Malignant", "Interval Cancer"):
        outcome = client_outcome
    else:
        outcome = None
    roi = Roi(box=check.box, label="|".join(labels) or "Mark",
              birads=normalise_birads(mark.get("BIRADS") or mark.get("Birads")), outcome=outcome)
    return roi, check


def read_marks(client_dir: Path, client: str, uids: set[str]) -> dict[str, list[dict]]:
    """Image UID → its marks in the client's imagedb JSON (none when the file is missing)."""
    path = client_dir / f"imagedb_{client}.json"
    if not path.exists():
        return {}
    with open(path) as f:
        db = json.load(f)
    subtrees: dict[str, list] = {}
    _index_by_uid(db, uids, subtrees)
    return {uid: [m for tree in trees for m in _marks_of(tree)] for uid, trees in subtrees.items()}


def image_rois(marks: list[dict], client: str, uid: str, client_outcome: str | None,
               image_size=None) -> tuple[list[Roi], list[BoxCheck], list[BoxCheck]]:
    """One image's ROIs, its box problems and its clipped boxes."""
    rois, problems, clipped = [], [], []
    for i, mark in enumerate(marks, start=1):
        roi, check = mark_to_roi(mark, client_outcome, f"imagedb_{client}.json image {uid} mark {i}",
                                 image_size)
        if roi is None:
            problems.append(check)
            continue
        rois.append(roi)
        if check.clipped:
            clipped.append(check)
    return rois, problems, clipped


def _find_status(node) -> str | None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.lower() == "status" and isinstance(value, str):
                return value
        for value in node.values():
            found = _find_status(value)
            if found:
                return found
    elif isinstance(node, list):
        for value in node:
            found = _find_status(value)
            if found:
                return found
    return None


def read_outcome(client_dir: Path, client: str) -> str | None:
    path = client_dir / f"nbss_{client}.json"
    if not path.exists():
        return None
    with open(path) as f:
        status = _find_status(json.load(f))
    if status is None:
        return None
    return OUTCOMES.get(status.strip().lower(), status.strip())


def read_header(dcm: Path, json_path: Path):
    """The image's header: its JSON sidecar when present, else the DICOM (no pixels)."""
    if json_path.exists():
        with open(json_path) as f:
            return header_from_json(json.load(f))
    import pydicom

    return pydicom.dcmread(dcm, stop_before_pixels=True)


def load(root) -> ExamTable:
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: not found (is --root an OMI-DB folder?)")
    table = ExamTable(DATASET)
    for client_path in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        client = client_path.name
        client_dir = root / "data" / client
        files = sorted(client_path.glob("*/*.dcm"))
        outcome = read_outcome(client_dir, client)
        marks = read_marks(client_dir, client, {f.stem for f in files})
        for dcm in files:
            study, sop = dcm.parent.name, dcm.stem
            try:
                header = read_header(dcm, client_dir / study / f"{sop}.json")
            except Exception as exc:  # noqa: BLE001 - any unreadable header is a skip, not a stop
                table.skipped.append(Skip(str(dcm), "unreadable", f"{type(exc).__name__}: {exc}"))
                continue
            lat, _ = dicom_tags.laterality(header, dcm.name)
            view, _ = dicom_tags.view(header, dcm.name)
            if lat is None:
                table.skipped.append(Skip(str(dcm), "missing laterality"))
                continue
            if view is None:
                table.skipped.append(Skip(str(dcm), "unknown view",
                                          f"ViewPosition={header.get('ViewPosition')!r}"))
                continue
            size = image_size(header.get("Rows"), header.get("Columns"))
            rois, problems, clipped = image_rois(marks.get(sop, []), client, sop, outcome, size)
            if problems:
                table.skipped.append(Skip(str(dcm), problems[0].problem,
                                          "; ".join(p.detail for p in problems)))
                continue
            table.adjusted.extend(Skip(str(dcm), "clipped box", c.clipped) for c in clipped)
            table.images.append(ExamImage(
                dataset=DATASET, patient=client, study=study, view=view, laterality=lat,
                path=str(dcm), image_id=sop, rois=tuple(rois),
                birads=None, outcome=outcome))
    return table
