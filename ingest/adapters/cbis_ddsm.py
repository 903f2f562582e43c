"""CBIS-DDSM (TCIA download) → exam table.

Expected under ``root`` (any depth): the image folders TCIA writes, one per image and named for
it (``Mass-Training_P_00001_LEFT_CC``, holding study and series folders and ``1-1.dcm``), one
per abnormality (``..._LEFT_CC_1``: the cropped image and the ROI mask), and the case
description CSVs (``mass_case_description_train_set.csv``, ``calc_..._test_set.csv``, ...).

- Patient, side and view come from the folder name (the scanned films' headers carry none); the
  study is the patient: each image is its own DICOM study, and the four images of a patient id
  form one exam (two pairs).
- The CSVs list abnormalities only. Their paths (``<folder>/<StudyUID>/<SeriesUID>/000000.dcm``)
  do not match the folders on disk: only their first part, the folder name, is used. A
  patient's images that no CSV row lists are used as images without findings.
- ROI boxes come from the ROI masks: in an abnormality's folder, the file of the full image's
  size with at most two grey values (the cropped image is smaller; file names do not say which
  is which). An image whose listed abnormality has no usable mask is rejected: used without
  its ROI it would count as normal.
- Labels: ``assessment`` is the finding's BI-RADS, ``pathology`` its outcome (MALIGNANT →
  Malignant; BENIGN and BENIGN_WITHOUT_CALLBACK → Benign). An image's BI-RADS is the highest of
  its findings', its outcome Malignant when any finding is.
- The same image can be listed under two folders (a mass and a calcification of one breast):
  the first folder by name is used, the others are reported as duplicates and their findings
  move to it.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.adapters.table import ExamImage, ExamTable, Roi, Skip, normalise_birads

DATASET = "cbis-ddsm"
CSV_PATTERN = "*case_description*.csv"
FOLDER = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_([A-Za-z]+)(?:_(\d+))?$")
LABELS = {"mass": "Mass", "calcification": "Calcification"}


def column_name(name: str) -> str:
    """``'breast_density'`` and ``'breast density'`` → ``'breast density'`` (the CSVs differ)."""
    return " ".join(str(name).strip().lower().replace("_", " ").split())


def folder_of(path_text) -> str:
    """The first part of a CSV path (the image's folder name), without the trailing newline
    some rows have."""
    parts = [p for p in re.split(r"[\\/]", str(path_text or "").strip()) if p]
    return parts[0] if parts else ""


def read_cases(root: Path) -> list[dict]:
    """Every case-description row (columns normalised), with ``csv``: the file it came from."""
    files = sorted(root.rglob(CSV_PATTERN))
    if not files:
        raise FileNotFoundError(f"{root}: no {CSV_PATTERN} found (is --root a CBIS-DDSM folder?)")
    rows = []
    for path in files:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.columns = [column_name(c) for c in frame.columns]
        for row in frame.to_dict("records"):
            rows.append({**row, "csv": path.name})
    return rows


def index_folders(root: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """``{folder name: [DICOM files under it]}`` for the CBIS-DDSM folders, and the DICOM files
    under no such folder."""
    folders: dict[str, list[Path]] = {}
    stray: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root).parts
        owner = next((part for part in reversed(rel) if FOLDER.match(part)), None)
        for name in sorted(filenames):
            if not name.lower().endswith(".dcm"):
                continue
            path = Path(dirpath) / name
            if owner is None:
                stray.append(path)
            else:
                folders.setdefault(owner, []).append(path)
    return folders, stray


def _shape(path: Path) -> tuple[int, int]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Rows", "Columns"])
    return int(ds.Rows), int(ds.Columns)


def mask_box(files: list[Path], shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """The box ``(x0, y0, x1, y1)`` (max exclusive) of the ROI mask among ``files``: the one of
    the image's ``shape`` with at most two grey values. ValueError says why there is none."""
    import pydicom

    if not files:
        raise ValueError("no ROI folder on disk")
    sized = [f for f in files if _shape(f) == tuple(shape)]
    if not sized:
        raise ValueError(f"no file of the image's size {shape[0]}x{shape[1]} in {files[0].parent}")
    masks = []
    for f in sized:
        pixels = pydicom.dcmread(f).pixel_array
        if not np.any((pixels != 0) & (pixels != pixels.max())):    # binary (cheaper than unique)
            masks.append((f, pixels))
    if len(masks) != 1:
        raise ValueError(f"{len(masks)} binary images of the image's size in {files[0].parent}")
    rows = np.flatnonzero(masks[0][1].any(axis=1))
    cols = np.flatnonzero(masks[0][1].any(axis=0))
    if not rows.size:
        raise ValueError(f"{masks[0][0]}: empty ROI mask")
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _outcome(pathology) -> str | None:
    text = str(pathology or "").strip().upper()
    if text.startswith("MALIGNANT"):
        return "Malignant"
    if text.startswith("BENIGN"):
        return "Benign"
    return None


def _image_rois(path: Path, rows: list[dict], folders: dict) -> tuple[tuple[Roi, ...], str]:
    """The image's ROIs from its CSV rows, or ``((), why)`` when one has no usable mask."""
    try:
        shape = _shape(path)
        rois = []
        for row in rows:
            roi_folder = folder_of(row.get("roi mask file path")) or folder_of(
                row.get("cropped image file path"))
            try:
                box = mask_box(folders.get(roi_folder, []), shape)
            except ValueError as exc:
                return (), f"{row['csv']}: abnormality {row.get('abnormality id')} ({roi_folder}): {exc}"
            kind = str(row.get("abnormality type", "")).strip().lower()
            rois.append(Roi(box=box, label=LABELS.get(kind, kind.capitalize() or "Finding"),
                            birads=normalise_birads(row.get("assessment")),
                            outcome=_outcome(row.get("pathology"))))
        return tuple(rois), ""
    except Exception as exc:  # noqa: BLE001 - an unreadable file is reported, not raised
        return (), f"{path}: {type(exc).__name__}: {exc}"


def load(root, workers: int = 1) -> ExamTable:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    cases = read_cases(root)
    folders, stray = index_folders(root)
    table = ExamTable(DATASET)
    table.skipped += [Skip(str(p), "unrecognised folder",
                           "no CBIS-DDSM image folder name (like Mass-Training_P_00001_LEFT_CC) "
                           "in its path") for p in stray]
    by_image: dict[str, list[dict]] = {}
    for row in cases:
        by_image.setdefault(folder_of(row.get("image file path")), []).append(row)
    for name in sorted(set(by_image) - set(folders)):
        table.skipped.append(Skip(name, "missing file",
                                  f"{by_image[name][0]['csv']} lists it; no such folder under {root}"))

    # One image per (patient, side, view): duplicates' findings move to the first folder.
    todo: dict[tuple, tuple[str, Path, list[dict]]] = {}
    for name in sorted(folders):
        match = FOLDER.match(name)
        if match.group(6) is not None:
            continue                                   # an abnormality's crop and mask
        files = folders[name]
        _, _, patient, side, view, _ = match.groups()
        view = view.upper()
        if view not in ("CC", "MLO"):
            table.skipped += [Skip(str(f), "unknown view", f"folder {name}: view {view!r}")
                              for f in files]
            continue
        if len(files) != 1:
            table.skipped += [Skip(str(f), "ambiguous image folder",
                                   f"{len(files)} DICOM files in {name}") for f in files]
            continue
        key = (patient, side[0], view)
        if key in todo:
            table.skipped.append(Skip(str(files[0]), "duplicate image",
                                      f"{patient} {side} {view} is {todo[key][0]}; its findings move there"))
            todo[key][2].extend(by_image.get(name, []))
            continue
        todo[key] = (name, files[0], list(by_image.get(name, [])))

    def one(item):
        key, (name, path, rows) = item
        rois, why = _image_rois(path, rows, folders)
        return (key, name, path, rows), rois, why

    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        done = list(pool.map(one, todo.items()))
    for ((patient, side, view), name, path, rows), rois, why in done:
        if why:
            table.skipped.append(Skip(str(path), "ROI mask unusable", why))
            continue
        birads = [int(r.birads) for r in rois if r.birads is not None]
        outcomes = {r.outcome for r in rois}
        table.images.append(ExamImage(
            dataset=DATASET, patient=patient, study=patient, view=view, laterality=side,
            path=str(path), image_id=name, rois=rois,
            birads=str(max(birads)) if birads else None,
            outcome="Malignant" if "Malignant" in outcomes else ("Benign" if "Benign" in outcomes else None)))
    return table
