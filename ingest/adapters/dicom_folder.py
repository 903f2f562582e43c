"""Any folder of mammography DICOMs → exam table.

Every file under ``root`` named ``*.dcm``, ``*.dicom`` or without an extension is read (header
only). Laterality and view come from the standard tags, then from the tags real files misuse and
from the file and folder names (``dicom_tags``); patient and exam from PatientID and
StudyInstanceUID, regrouped where each image is its own study (``dicom_exams``); the image id
from SOPInstanceUID. A manifest CSV (``--manifest``) with a ``path`` column (relative to ``root``
or absolute) and any of ``patient``, ``study``, ``laterality``, ``view``, ``image_id``,
``birads``, ``outcome`` supplies or overrides those values per file. The table records where
every image's patient, study, laterality and view came from (``DicomExamTable.sources``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ingest.adapters import dicom_tags
from ingest.adapters.dicom_exams import DicomExamTable, FileIds, group_exams
from ingest.adapters.table import ExamImage, Skip, normalise_birads

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


def _side_and_view(ds, text: str, extra: dict) -> tuple[str | None, str, str | None, str]:
    if extra.get("laterality"):
        lat, lat_src = extra["laterality"].upper()[:1], "manifest"
    else:
        lat, lat_src = dicom_tags.laterality(ds, text)
    if extra.get("view"):
        view, view_src = extra["view"].upper(), "manifest"
    else:
        view, view_src = dicom_tags.view(ds, text)
    return lat, lat_src, view, view_src


def _looked_at(ds, tags) -> str:
    """The values an unknown side or view was looked for in, for the rejection's detail."""
    said = [f"{t}={dicom_tags.tag_text(ds, t)!r}" for t in tags if dicom_tags.tag_text(ds, t)]
    return "; ".join(said) or "no tag holds it"


def load(root, manifest=None) -> DicomExamTable:
    import pydicom

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    overrides = read_manifest(manifest, root) if manifest else {}
    table = DicomExamTable(DATASET)
    files = candidate_files(root)
    seen = {f.resolve() for f in files}
    for missing in sorted(set(overrides) - seen):
        table.skipped.append(Skip(str(missing), "missing file", "listed in the manifest"))
    found = []   # (path, ds, extra, FileIds, sources) of images whose side and view are known
    for path in files:
        extra = overrides.get(path.resolve(), {})
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a skip, not a stop
            table.skipped.append(Skip(str(path), "unreadable", f"{type(exc).__name__}: {exc}"))
            continue
        text = str(path.relative_to(root))
        lat, lat_src, view, view_src = _side_and_view(ds, text, extra)
        if lat not in ("L", "R"):
            table.skipped.append(Skip(str(path), "missing laterality", (
                f"laterality={extra['laterality']!r} in {manifest}" if "laterality" in extra
                else "looked in the standard tags, " + ", ".join(dicom_tags.TEXT_TAGS)
                + f" and the path {text!r}: " + _looked_at(ds, ("ImageLaterality", "Laterality")))))
            continue
        if view not in ("CC", "MLO"):
            table.skipped.append(Skip(str(path), "unknown view", (
                f"view={extra['view']!r} in {manifest}" if "view" in extra
                else "looked in ViewPosition, ViewCodeSequence, " + ", ".join(dicom_tags.TEXT_TAGS)
                + f" and the path {text!r}: " + _looked_at(ds, ("ViewPosition",)))))
            continue
        parts = Path(text).parts
        ids = FileIds(path=str(path), laterality=lat, view=view,
                      patient_id=dicom_tags.tag_text(ds, "PatientID"),
                      study_uid=dicom_tags.tag_text(ds, "StudyInstanceUID"),
                      accession=dicom_tags.tag_text(ds, "AccessionNumber"),
                      study_date=dicom_tags.tag_text(ds, "StudyDate"),
                      top_folder=parts[0] if len(parts) > 1 else "")
        found.append((path, extra, ids, {"laterality": lat_src, "view": view_src},
                      dicom_tags.tag_text(ds, "SOPInstanceUID")))
    exams = group_exams([ids for _, _, ids, _, _ in found])
    for path, extra, ids, sources, sop in found:
        patient, patient_src, study, study_src = exams[str(path)]
        if extra.get("patient"):
            patient, patient_src = extra["patient"], "manifest"
        if extra.get("study"):
            study, study_src = extra["study"], "manifest"
        if not patient or not study:
            table.skipped.append(Skip(str(path), "missing patient or study",
                                      "no PatientID/StudyInstanceUID, no folder, none in the manifest"))
            continue
        table.images.append(ExamImage(
            dataset=DATASET, patient=patient, study=study, view=ids.view, laterality=ids.laterality,
            path=str(path), image_id=extra.get("image_id") or sop or path.stem, rois=(),
            birads=normalise_birads(extra.get("birads")), outcome=extra.get("outcome")))
        table.sources[str(path)] = {"patient": patient_src, "study": study_src, **sources}
    return table
