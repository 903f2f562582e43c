"""VinDr-Mammo layout → exam table.

Expected under ``root``: ``breast-level_annotations.csv`` (one row per image: study_id, series_id,
image_id, laterality, view_position, height, width, breast_birads, ...), ``finding_annotations.csv``
(one row per finding: the same columns plus finding_categories, finding_birads, xmin, ymin, xmax,
ymax) and the images at ``images/<study_id>/<image_id>.dicom``. The tables have no patient
column: the patient is the DICOM header's PatientID (header only, no pixels), else the study id
(VinDr-Mammo has one study per patient); a ``patient_id`` column, when present, wins.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pandas as pd

from ingest.adapters.boxes import check_box, image_size, require_columns
from ingest.adapters.table import ExamImage, ExamTable, Roi, Skip, normalise_birads

DATASET = "vindr"
BREAST_CSV = "breast-level_annotations.csv"
FINDING_CSV = "finding_annotations.csv"


def _categories(text) -> list[str]:
    """``"['Mass', 'Suspicious Calcification']"`` → list; plain text → [text]."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    text = str(text).strip()
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = [text]
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in value if str(v) and str(v) != "No Finding"]


BREAST_COLUMNS = ("study_id", "image_id", "laterality", "view_position")
FINDING_COLUMNS = ("image_id", "xmin", "ymin", "xmax", "ymax")
BOX_COLUMNS = ("xmin", "ymin", "xmax", "ymax")


def _read_table(path: Path, needed) -> list[dict]:
    """The CSV's rows as dicts of text; a missing column is an error naming the file and it."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    require_columns(list(frame.columns), needed, path)
    return frame.to_dict("records")


def read_findings(root: Path, sizes=None) -> tuple[dict, dict, list[Skip]]:
    """image_id → ROIs (boxes in original pixels), image_id → box problems, clipped boxes.

    A finding without a box (all four cells empty) is no ROI. A box that cannot be used is a
    problem of its image (named by the file, the line, the column and the value); a box that
    reaches past the image (``sizes``: image_id → (height, width) or None, a mapping or a
    callable) is clipped and reported.
    """
    path = root / FINDING_CSV
    if not path.exists():
        return {}, {}, []
    size_of = sizes if callable(sizes) else (sizes or {}).get
    rois: dict[str, list[Roi]] = {}
    problems: dict[str, list[tuple[str, str]]] = {}
    clipped: list[Skip] = []
    for line, row in enumerate(_read_table(path, FINDING_COLUMNS), start=2):
        image_id = row["image_id"]
        check = check_box(row, BOX_COLUMNS, f"{FINDING_CSV} line {line}", size_of(image_id))
        if check.problem:
            problems.setdefault(image_id, []).append((check.problem, check.detail))
            continue
        if check.box is None:
            continue
        if check.clipped:
            clipped.append(Skip(image_id, "clipped box", check.clipped))
        labels = _categories(row.get("finding_categories")) or ["Finding"]
        rois.setdefault(image_id, []).append(
            Roi(box=check.box, label="|".join(labels),
                birads=normalise_birads(row.get("finding_birads"))))
    return rois, problems, clipped


def header_size(path: Path) -> tuple[float, float] | None:
    """(Rows, Columns) of a DICOM file's header, or None when it cannot be read."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
    except Exception:  # noqa: BLE001 - an unreadable file is reported when its pixels are read
        return None
    return image_size(ds.get("Rows"), ds.get("Columns"))


def header_patient(path: Path) -> str:
    """PatientID of a DICOM file ('' when the header has none or cannot be read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception:  # noqa: BLE001 - an unreadable file is reported when its pixels are read
        return ""
    return str(ds.get("PatientID", "") or "").strip()


def load(root, patient_from_header: bool = True) -> ExamTable:
    root = Path(root)
    breast = root / BREAST_CSV
    if not breast.exists():
        raise FileNotFoundError(f"{breast}: not found (is --root a VinDr-Mammo folder?)")
    table = ExamTable(DATASET)
    rows = _read_table(breast, BREAST_COLUMNS)
    paths = {row["image_id"]: root / "images" / row["study_id"] / f"{row['image_id']}.dicom"
             for row in rows}
    sizes = {row["image_id"]: image_size(row.get("height"), row.get("width")) for row in rows}

    def size_of(image_id):
        # The table's height and width, else the image's header (read only for boxed images).
        if sizes.get(image_id) is None and image_id in paths:
            sizes[image_id] = header_size(paths[image_id])
        return sizes.get(image_id)

    findings, box_problems, clipped = read_findings(root, size_of)
    table.adjusted.extend(Skip(str(paths[c.item]), c.reason, c.detail)
                          for c in clipped if c.item in paths)
    for row in rows:
        study, image_id = row["study_id"], row["image_id"]
        path = root / "images" / study / f"{image_id}.dicom"
        lat = str(row["laterality"]).strip().upper()[:1]
        view = str(row["view_position"]).strip().upper()
        if lat not in ("L", "R"):
            table.skipped.append(Skip(str(path), "missing laterality", f"laterality={row['laterality']!r}"))
            continue
        if view not in ("CC", "MLO"):
            table.skipped.append(Skip(str(path), "unknown view", f"view_position={row['view_position']!r}"))
            continue
        if not path.is_file():
            table.skipped.append(Skip(str(path), "missing file"))
            continue
        if image_id in box_problems:
            reasons = box_problems[image_id]
            table.skipped.append(Skip(str(path), reasons[0][0], "; ".join(d for _, d in reasons)))
            continue
        table.images.append(ExamImage(
            dataset=DATASET, view=view, study=study,
            patient=(row.get("patient_id") or (header_patient(path) if patient_from_header else "")
                     or study),
            laterality=lat, path=str(path), image_id=image_id,
            rois=tuple(findings.get(image_id, ())), birads=normalise_birads(row.get("breast_birads")),
            outcome=None))
    return table
