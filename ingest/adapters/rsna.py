"""RSNA Screening Mammography (the Kaggle competition's training set) → exam table.

Expected under ``root``: ``train.csv`` (site_id, patient_id, image_id, laterality, view, age,
cancer, biopsy, invasive, BIRADS, implant, density, machine_id, difficult_negative_case) and the
images at ``train_images/<patient_id>/<image_id>.dcm``. Side and view come from the CSV (the
headers are not relied on). Each patient has one exam: the study is the patient.

- Views other than CC and MLO (AT, ML, LM, LMO, ...) are rejected with the view in the reason's
  detail; repeated images of one side and view are left to pairing (the first by image id).
- Labels are per breast, no ROIs: ``cancer`` → outcome Malignant; a biopsy without cancer →
  Benign; otherwise Normal. ``BIRADS`` (site 1 only: 0 recall, 1 normal, 2 benign) is the
  breast's BI-RADS. Without ROIs there are no downstream patch labels (docs/ingest.md).
- DICOM files under ``train_images`` that ``train.csv`` does not list are reported.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ingest.adapters.table import ExamImage, ExamTable, Skip, normalise_birads

DATASET = "rsna"
CSV = "train.csv"
IMAGES = "train_images"


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "1.0", "true", "yes")


def outcome(row: dict) -> str:
    if _flag(row.get("cancer")):
        return "Malignant"
    return "Benign" if _flag(row.get("biopsy")) else "Normal"


def load(root) -> ExamTable:
    root = Path(root)
    path = root / CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (is --root an RSNA Screening Mammography folder?)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = {"patient_id", "image_id", "laterality", "view"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    table = ExamTable(DATASET)
    listed = set()
    for row in frame.to_dict("records"):
        patient, image_id = row["patient_id"].strip(), row["image_id"].strip()
        image = root / IMAGES / patient / f"{image_id}.dcm"
        listed.add(image)
        lat = row["laterality"].strip().upper()[:1]
        view = row["view"].strip().upper()
        if lat not in ("L", "R"):
            table.skipped.append(Skip(str(image), "missing laterality", f"laterality={row['laterality']!r}"))
        elif view not in ("CC", "MLO"):
            table.skipped.append(Skip(str(image), "unknown view",
                                      f"view={row['view']!r}: only CC and MLO are paired"))
        elif not image.is_file():
            table.skipped.append(Skip(str(image), "missing file"))
        else:
            table.images.append(ExamImage(
                dataset=DATASET, patient=patient, study=patient, view=view, laterality=lat,
                path=str(image), image_id=image_id, rois=(),
                birads=normalise_birads(row.get("BIRADS")), outcome=outcome(row)))
    for dirpath, _, filenames in sorted(os.walk(root / IMAGES)):
        for name in sorted(filenames):
            image = Path(dirpath) / name
            if name.lower().endswith(".dcm") and image not in listed:
                table.skipped.append(Skip(str(image), "not in train.csv"))
    return table
