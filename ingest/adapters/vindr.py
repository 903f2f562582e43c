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


def _finite(*values) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def read_findings(root: Path) -> dict[str, list[Roi]]:
    """image_id → ROIs (boxes in original pixels). A finding without a box is no ROI."""
    path = root / FINDING_CSV
    if not path.exists():
        return {}
    rois: dict[str, list[Roi]] = {}
    for row in pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records"):
        if not _finite(row.get("xmin"), row.get("ymin"), row.get("xmax"), row.get("ymax")):
            continue
        labels = _categories(row.get("finding_categories")) or ["Finding"]
        box = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        rois.setdefault(row["image_id"], []).append(
            Roi(box=box, label="|".join(labels), birads=normalise_birads(row.get("finding_birads"))))
    return rois


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
    findings = read_findings(root)
    for row in pd.read_csv(breast, dtype=str, keep_default_na=False).to_dict("records"):
        study, image_id = row.get("study_id", ""), row.get("image_id", "")
        path = root / "images" / study / f"{image_id}.dicom"
        lat = str(row.get("laterality", "")).strip().upper()[:1]
        view = str(row.get("view_position", "")).strip().upper()
        if lat not in ("L", "R"):
            table.skipped.append(Skip(str(path), "missing laterality", f"laterality={row.get('laterality')!r}"))
            continue
        if view not in ("CC", "MLO"):
            table.skipped.append(Skip(str(path), "unknown view", f"view_position={row.get('view_position')!r}"))
            continue
        if not path.is_file():
            table.skipped.append(Skip(str(path), "missing file"))
            continue
        table.images.append(ExamImage(
            dataset=DATASET, view=view, study=study,
            patient=(row.get("patient_id") or (header_patient(path) if patient_from_header else "")
                     or study),
            laterality=lat, path=str(path), image_id=image_id,
            rois=tuple(findings.get(image_id, ())), birads=normalise_birads(row.get("breast_birads")),
            outcome=None))
    return table
