"""The RSNA Screening Mammography layout (the Kaggle competition's training set).

``train.csv`` has one row per image (site_id, patient_id, image_id, laterality, view, age,
cancer, biopsy, invasive, BIRADS, implant, density, machine_id, difficult_negative_case) and the
images are ``train_images/<patient_id>/<image_id>.dcm``. Ids are integers; the side and the
view are in the CSV only (the headers here carry neither, so an adapter that reads them from the
tags fails). Labels are per breast: cancer, biopsy and invasive on the lesion's side; BIRADS
(0 recall, 1 normal, 2 benign) at site 1 only; no ROIs. Some patients have an extra image in a
view other than CC and MLO (AT, ML, LM, LMO) or a repeated CC, as the real set has: the extra
image is a copy of the patient's L or R CC under its own image id, listed in ground truth under
``extra_images`` of the image it copies. Each patient has one study (``one_study``).

The real set's files are compressed (JPEG 2000 lossless or JPEG lossless). Site 2's images here
are JPEG 2000 lossless (encoded with Pillow's OpenJPEG, decoded by pydicom through Pillow), so
the decode path of compressed files is exercised; site 1's are uncompressed (no encoder for
lossless JPEG is at hand).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless


from . import dicom_writer
from .exam import PatientPlan, RenderedImage, rng_for
from .files import atomic_write_text, csv_text

COLUMNS = ["site_id", "patient_id", "image_id", "laterality", "view", "age", "cancer", "biopsy",
           "invasive", "BIRADS", "implant", "density", "machine_id", "difficult_negative_case"]
MACHINES = (21, 29, 48, 49, 93, 170, 190, 197, 210, 216)
EXTRA_VIEWS = ("AT", "ML", "LM", "LMO", "CC")      # CC: a repeated acquisition
SIDE_VIEW_TAGS = ("ViewPosition", "ImageLaterality", "ViewCodeSequence", "PatientOrientation",
                  "SeriesDescription")


def write_j2k(path: Path, ds, pixels: np.ndarray) -> None:
    """Attach ``pixels`` (uint16) to ``ds`` as JPEG 2000 lossless and write it atomically."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint16)).save(
        buf, format="JPEG2000", irreversible=False, no_jp2=True)
    ds.LossyImageCompression = "00"
    dicom_writer.save(path, ds, encapsulate([buf.getvalue()]), JPEG2000Lossless)


class RsnaLayout:
    name = "rsna"
    one_study = True

    def ids(self, plan: PatientPlan) -> dict:
        rng = rng_for(plan.seed, plan.index, 7)
        extra = None
        if rng.random() < 0.3:
            extra = {"view": str(rng.choice(EXTRA_VIEWS)), "side": str(rng.choice(["L", "R"])),
                     "image_id": int(rng.integers(10 ** 8, 2 ** 31))}
        return {"patient_id": str(10000 + 7 * plan.index + int(rng.integers(0, 7))),
                "site_id": int(1 + (rng.random() < 0.4)), "machine_id": int(rng.choice(MACHINES)),
                "difficult": bool(rng.random() < 0.1),
                "image_ids": {key: int(rng.integers(10 ** 8, 2 ** 31))
                              for key in ("L CC", "L MLO", "R CC", "R MLO")},
                "extra": extra}

    def _write(self, out: Path, plan, study, img, ids, image_id: int) -> str:
        rec = img.record
        rel = f"train_images/{ids['patient_id']}/{image_id}.dcm"
        uids = {"patient_id": ids["patient_id"],
                "study_uid": dicom_writer.make_uid(plan.seed, plan.index, "study", study),
                "series_uid": dicom_writer.make_uid(plan.seed, plan.index, "series", image_id),
                "sop_uid": dicom_writer.make_uid(plan.seed, plan.index, "image", image_id),
                "accession": ""}
        ds = dicom_writer.header(rec, uids, plan.device, plan.age, plan.studies[study].date)
        for tag in SIDE_VIEW_TAGS:
            delattr(ds, tag)
        if ids["site_id"] == 2:
            write_j2k(out / rel, ds, img.pixels)
        else:
            dicom_writer.write_dicom(out / rel, ds, img.pixels)
        return rel

    def _row(self, plan, ids, image_id: int, lat: str, view: str) -> dict:
        lesion_here = plan.lesion is not None and plan.lesion_side == lat
        malignant = lesion_here and plan.lesion.outcome == "malignant"
        birads = ""
        if ids["site_id"] == 1:
            birads = 0 if lesion_here else (1 if plan.studies[-1].birads[lat] == 1 else 2)
        return {"site_id": ids["site_id"], "patient_id": ids["patient_id"], "image_id": image_id,
                "laterality": lat, "view": view, "age": float(plan.age), "cancer": int(malignant),
                "biopsy": int(lesion_here), "invasive": int(malignant), "BIRADS": birads,
                "implant": 0, "density": plan.density if ids["site_id"] == 1 else "",
                "machine_id": ids["machine_id"],
                "difficult_negative_case": ids["difficult"] and not malignant}

    def write_image(self, out: Path, plan: PatientPlan, study: int, img: RenderedImage, ids: dict) -> dict:
        rec = img.record
        lat, view = rec["laterality"], rec["view"]
        image_id = ids["image_ids"][f"{lat} {view}"]
        rel = self._write(out, plan, study, img, ids, image_id)
        rows = [self._row(plan, ids, image_id, lat, view)]
        extras = []
        extra = ids["extra"]
        if extra and view == "CC" and extra["side"] == lat:
            extra_rel = self._write(out, plan, study, img, ids, extra["image_id"])
            rows.append(self._row(plan, ids, extra["image_id"], lat, extra["view"]))
            extras.append({"image_id": str(extra["image_id"]), "path": extra_rel,
                           "view": extra["view"]})
        return {"path": rel, "patient": ids["patient_id"], "study": ids["patient_id"],
                "image_id": str(image_id), "extra_images": extras, "table_rows": rows}

    def finish_patient(self, out: Path, plan: PatientPlan, ids: dict, images: list[dict]) -> None:
        return None

    def write_tables(self, out: Path, images: list[dict]) -> None:
        rows = [row for im in images for row in im["table_rows"]]
        atomic_write_text(out / "train.csv", csv_text(COLUMNS, rows))
