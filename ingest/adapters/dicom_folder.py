"""Any folder of mammography DICOMs → exam table.

Every file under ``root`` named ``*.dcm``, ``*.dicom`` or without an extension is read (header
only). Patient, study and image ids come from PatientID, StudyInstanceUID and SOPInstanceUID;
laterality and view from the standard tags with text fallbacks (``dicom_tags``). A manifest CSV
(``--manifest``) with a ``path`` column (relative to ``root`` or absolute) and any of ``patient``,
``study``, ``laterality``, ``view``, ``image_id``, ``birads``, ``outcome`` supplies or overrides
those values per file.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingest.adapters import dicom_tags
from ingest.adapters.table import ExamImage, ExamTable, Skip, normalise_birads

DATASET = "dicom"
SUFFIXES = {".dcm", ".dicom", ""}
MANIFEST_COLUMNS = ("patient", "study", "laterality", "view", "image_id", "birads", "outcome")


def candidate_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def read_manifest(path, root: Path) -> dict[Path, dict]:
    """Manifest rows keyed by resolved path; empty cells do not override."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "path" not in frame.columns:
        raise ValueError(f"{path}: the manifest needs a 'path' column")
    rows = {}
    for row in frame.to_dict("records"):
        p = Path(row["path"])
        p = p if p.is_absolute() else root / p
        rows[p.resolve()] = {k: str(row[k]).strip() for k in MANIFEST_COLUMNS if str(row.get(k, "")).strip()}
    return rows


def load(root, manifest=None) -> ExamTable:
    import pydicom

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    overrides = read_manifest(manifest, root) if manifest else {}
    table = ExamTable(DATASET)
    files = candidate_files(root)
    seen = {f.resolve() for f in files}
    for missing in sorted(set(overrides) - seen):
        table.skipped.append(Skip(str(missing), "missing file", "listed in the manifest"))
    for path in files:
        extra = overrides.get(path.resolve(), {})
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a skip, not a stop
            table.skipped.append(Skip(str(path), "unreadable", f"{type(exc).__name__}: {exc}"))
            continue
        text = str(path.relative_to(root))
        ident = dicom_tags.identity(ds)
        lat = extra.get("laterality", "").upper()[:1] or dicom_tags.laterality(ds, text)[0]
        view = extra.get("view", "").upper() or dicom_tags.view(ds, text)[0]
        patient = extra.get("patient") or ident["patient"]
        study = extra.get("study") or ident["study"]
        image_id = extra.get("image_id") or ident["image_id"] or path.stem
        if lat not in ("L", "R"):
            table.skipped.append(Skip(str(path), "missing laterality", (
                f"laterality={extra['laterality']!r} in {manifest}" if "laterality" in extra
                else "no ImageLaterality/Laterality and none in the path or descriptions")))
        elif view not in ("CC", "MLO"):
            table.skipped.append(Skip(str(path), "unknown view", (
                f"view={extra['view']!r} in {manifest}" if "view" in extra
                else f"ViewPosition={ds.get('ViewPosition')!r}")))
        elif not patient or not study:
            table.skipped.append(Skip(str(path), "missing patient or study",
                                      "no PatientID/StudyInstanceUID and none in the manifest"))
        else:
            table.images.append(ExamImage(
                dataset=DATASET, patient=patient, study=study, view=view, laterality=lat,
                path=str(path), image_id=image_id, rois=(),
                birads=normalise_birads(extra.get("birads")), outcome=extra.get("outcome")))
    return table
