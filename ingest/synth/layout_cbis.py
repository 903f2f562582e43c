"""The CBIS-DDSM layout, as TCIA's download writes it.

One folder per image, named for the abnormality type, the split, the patient, the side and the
view (``Mass-Training_P_00001_LEFT_CC``), holding a study folder, a series folder and ``1-1.dcm``;
each abnormality has its own folder (``..._LEFT_CC_1``) with the cropped image and the ROI mask
(a binary image of the full image's size) in one series, in no fixed order. The case description
CSVs (mass and calcification, train and test) list the abnormalities only: a patient's other
images are in the folders, not in the CSVs; their paths are the published ones
(``<folder>/<StudyUID>/<SeriesUID>/000000.dcm``), which do not match the folders on disk, and
the last one ends with a newline, as in the real files.

Images are scanned film: MONOCHROME2, 16 bits stored, a minimal header (no laterality, no view,
the folder name as the patient id). The layout rewrites the rendered image's record to what it
stored (photometric, bits, no padding, the display window carried over to the film's values)
and puts the film in its pixels, so ``ground_truth.json`` and the preview describe the files.
Each patient has one study (``one_study``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset


from . import dicom_writer
from .exam import PatientPlan, RenderedImage, rng_for
from .files import atomic_write_text, csv_text

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SIDE_WORD = {"L": "LEFT", "R": "RIGHT"}
MASS_COLUMNS = ["patient_id", "breast_density", "left or right breast", "image view",
                "abnormality id", "abnormality type", "mass shape", "mass margins", "assessment",
                "pathology", "subtlety", "image file path", "cropped image file path",
                "ROI mask file path"]
CALC_COLUMNS = ["patient_id", "breast density", "left or right breast", "image view",
                "abnormality id", "abnormality type", "calc type", "calc distribution",
                "assessment", "pathology", "subtlety", "image file path",
                "cropped image file path", "ROI mask file path"]
MASS_SHAPE = {"round": ("ROUND", "CIRCUMSCRIBED"), "oval": ("OVAL", "CIRCUMSCRIBED"),
              "lobulated": ("LOBULATED", "ILL_DEFINED"), "spiculated": ("IRREGULAR", "SPICULATED")}
DENSITY_NUMBER = {"A": 1, "B": 2, "C": 3, "D": 4}
CSV_NAMES = {("mass", "training"): "mass_case_description_train_set.csv",
             ("mass", "test"): "mass_case_description_test_set.csv",
             ("calcification", "training"): "calc_case_description_train_set.csv",
             ("calcification", "test"): "calc_case_description_test_set.csv"}
IMAGES_DIR = "CBIS-DDSM"


def to_film(pixels: np.ndarray, record: dict) -> np.ndarray:
    """Stored detector values → a 16-bit MONOCHROME2 scan (breast bright, full range)."""
    top = 2 ** int(record["bits_stored"]) - 1
    values = pixels.astype(np.float64)
    if record["photometric"] == "MONOCHROME1":
        values = top - values
    return np.round(values * (65535.0 / top)).astype(np.uint16)


def roi_mask(shape: tuple[int, int], box) -> np.ndarray:
    """A binary lesion outline filling ``box`` ([x0, y0, x1, y1], max exclusive): an ellipse,
    plus its two axes so that the mask's bounding box is exactly the box."""
    x0, y0, x1, y1 = (int(v) for v in box)
    mask = np.zeros(shape, dtype=np.uint8)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cy, cx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2
    ry, rx = max((y1 - y0) / 2, 0.5), max((x1 - x0) / 2, 0.5)
    mask[y0:y1, x0:x1] = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0) * 255
    mask[int(cy), x0:x1] = 255
    mask[y0:y1, int(cx)] = 255
    return mask


def film_header(folder: str, uids: dict, date: str, shape, bits: int, description: str) -> Dataset:
    """The scanned film's header as CBIS-DDSM has it: ids, size, pixel format, little else."""
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = uids["sop"]
    ds.StudyInstanceUID = uids["study"]
    ds.SeriesInstanceUID = uids["series"]
    ds.StudyDate = date
    ds.Modality = "MG"
    ds.ConversionType = "WSD"
    ds.PatientName = folder
    ds.PatientID = folder
    ds.BodyPartExamined = "BREAST"
    ds.SeriesDescription = description
    ds.StudyID = "DDSM"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(shape[0]), int(shape[1])
    ds.BitsAllocated = 8 if bits == 8 else 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    return ds


def write_film(path: Path, ds: Dataset, pixels: np.ndarray) -> None:
    """Write ``pixels`` (uint8 or uint16, as the header says) atomically."""
    dtype = "u1" if ds.BitsAllocated == 8 else "<u2"
    dicom_writer.save(path, ds, np.ascontiguousarray(pixels, dtype=dtype).tobytes())


def _series_dir(date: str, study_uid: str, n: int, description: str, series_uid: str) -> str:
    """``07-20-2016-DDSM-74994/1.000000-full mammogram images-24515``, as TCIA names them."""
    return (f"{date[4:6]}-{date[6:]}-{date[:4]}-DDSM-{study_uid[-5:]}/"
            f"{n}.000000-{description}-{series_uid[-5:]}")


class CbisDdsmLayout:
    name = "cbis-ddsm"
    one_study = True

    def ids(self, plan: PatientPlan) -> dict:
        rng = rng_for(plan.seed, plan.index, 7)
        kind = plan.lesion.kind if plan.lesion else ("mass" if rng.random() < 0.5 else "calcification")
        split = "Training" if plan.split == "training" else "Test"
        return {"patient_id": f"P_{plan.index + 1:05d}",
                "prefix": f"{'Mass' if kind == 'mass' else 'Calc'}-{split}",
                "pathology_draw": float(rng.random()), "mask_first": bool(rng.random() < 0.5)}

    def _uids(self, plan, folder: str) -> dict:
        return {k: dicom_writer.make_uid(plan.seed, plan.index, folder, k)
                for k in ("study", "series", "sop", "roi_series", "crop_sop", "mask_sop")}

    def write_image(self, out: Path, plan: PatientPlan, study: int, img: RenderedImage, ids: dict) -> dict:
        rec = img.record
        folder = f"{ids['prefix']}_{ids['patient_id']}_{SIDE_WORD[rec['laterality']]}_{rec['view']}"
        uids = self._uids(plan, folder)
        date = plan.studies[study].date
        film = to_film(img.pixels, rec)
        rel = f"{IMAGES_DIR}/{folder}/{_series_dir(date, uids['study'], 1, 'full mammogram images', uids['series'])}/1-1.dcm"
        write_film(out / rel, film_header(folder, uids, date, film.shape, 16, "full mammogram images"), film)
        # The record and the image describe what the file holds, not what the detector gave
        # (the preview reads both); the display window follows the values into the film.
        top = 2 ** int(rec["bits_stored"]) - 1
        center = top - rec["window_center"] if rec["photometric"] == "MONOCHROME1" else rec["window_center"]
        rec.update({"photometric": "MONOCHROME2", "bits_stored": 16, "padding_value": None,
                    "window_center": round(center * 65535 / top, 1),
                    "window_width": round(rec["window_width"] * 65535 / top, 1),
                    "voi_lut_function": "LINEAR"})
        img.pixels = film
        rows, rois = [], []
        for n, les in enumerate(rec["lesions"], start=1):
            roi_folder = f"{folder}_{n}"
            ruids = self._uids(plan, roi_folder)
            series = _series_dir(date, ruids["study"], 1, "ROI mask images", ruids["roi_series"])
            x0, y0, x1, y1 = les["box"]
            crop = film[y0:y1, x0:x1]
            mask = roi_mask(film.shape, les["box"])
            crop_name, mask_name = ("1-2.dcm", "1-1.dcm") if ids["mask_first"] else ("1-1.dcm", "1-2.dcm")
            write_film(out / IMAGES_DIR / roi_folder / series / crop_name,
                       film_header(roi_folder, {**ruids, "series": ruids["roi_series"], "sop": ruids["crop_sop"]},
                                   date, crop.shape, 16, "cropped images"), crop)
            write_film(out / IMAGES_DIR / roi_folder / series / mask_name,
                       film_header(roi_folder, {**ruids, "series": ruids["roi_series"], "sop": ruids["mask_sop"]},
                                   date, mask.shape, 8, "ROI mask images"), mask)
            rois.append({"folder": roi_folder, "crop": f"{IMAGES_DIR}/{roi_folder}/{series}/{crop_name}",
                         "mask": f"{IMAGES_DIR}/{roi_folder}/{series}/{mask_name}"})
            rows.append(self._csv_row(plan, ids, rec, les, n, folder, uids, roi_folder, ruids))
        return {"path": rel, "patient": ids["patient_id"], "study": ids["patient_id"],
                "image_id": folder, "study_uid": uids["study"], "series_uid": uids["series"],
                "sop_uid": uids["sop"], "roi_files": rois, "table_rows": rows}

    def _csv_row(self, plan, ids, rec, les, n, folder, uids, roi_folder, ruids) -> tuple[str, dict]:
        malignant = les["outcome"] == "malignant"
        pathology = "MALIGNANT" if malignant else (
            "BENIGN_WITHOUT_CALLBACK" if ids["pathology_draw"] < 0.3 else "BENIGN")
        row = {"patient_id": ids["patient_id"], "left or right breast": SIDE_WORD[rec["laterality"]],
               "image view": rec["view"], "abnormality id": n, "assessment": les["birads"],
               "pathology": pathology,
               "subtlety": int(np.clip(np.ceil(plan.lesion.conspicuity * 5), 1, 5)),
               "image file path": f"{folder}/{uids['study']}/{uids['series']}/000000.dcm",
               "cropped image file path": f"{roi_folder}/{ruids['study']}/{ruids['roi_series']}/000000.dcm",
               "ROI mask file path": f"{roi_folder}/{ruids['study']}/{ruids['roi_series']}/000001.dcm\n"}
        if les["type"] == "mass":
            shape, margins = MASS_SHAPE.get(les["shape"], ("IRREGULAR", "ILL_DEFINED"))
            row.update({"breast_density": DENSITY_NUMBER[plan.density], "abnormality type": "mass",
                        "mass shape": shape, "mass margins": margins})
        else:
            row.update({"breast density": DENSITY_NUMBER[plan.density],
                        "abnormality type": "calcification", "calc type": "PLEOMORPHIC",
                        "calc distribution": "CLUSTERED"})
        return CSV_NAMES[(les["type"], plan.split)], row

    def finish_patient(self, out: Path, plan: PatientPlan, ids: dict, images: list[dict]) -> None:
        return None

    def write_tables(self, out: Path, images: list[dict]) -> None:
        tables = {name: [] for name in CSV_NAMES.values()}
        for im in images:
            for name, row in im["table_rows"]:
                tables[name].append(row)
        for name, rows in tables.items():
            columns = MASS_COLUMNS if name.startswith("mass") else CALC_COLUMNS
            atomic_write_text(out / name, csv_text(columns, rows))
