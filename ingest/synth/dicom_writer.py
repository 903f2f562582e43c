"""DICOM files for synthetic mammograms: a valid "Digital Mammography X-Ray Image Storage - For
Presentation" object, written atomically (temporary name, fsync, rename)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from shards import publish

DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
# SNOMED CT codes of the views (ViewCodeSequence), as scanners write them.
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
# Row and column directions of the stored image (chest wall left for L, right for R).
PATIENT_ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"],
                       ("L", "MLO"): ["A", "FR"], ("R", "MLO"): ["P", "FL"]}


def make_uid(*parts) -> str:
    """A proper DICOM UID, deterministic in ``parts`` (seed, patient, study, ...)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def header(record: dict, ids: dict, device: tuple, age: int, study_date: str) -> Dataset:
    """The DICOM header (no pixel data) of one image; ``ids`` holds the UIDs and patient id."""
    lat, view = record["laterality"], record["view"]
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = DIGITAL_MAMMOGRAPHY_FOR_PRESENTATION
    ds.SOPInstanceUID = ids["sop_uid"]
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = "100000"
    ds.AccessionNumber = ids.get("accession", "")
    ds.Modality = "MG"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = device[0]
    ds.ManufacturerModelName = device[1]
    ds.InstitutionName = "SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Bilateral Screening Mammogram"
    ds.SeriesDescription = f"{lat} {view}"
    ds.PatientName = ids["patient_id"]
    ds.PatientID = ids["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.PatientAge = f"{age:03d}Y"
    ds.BodyPartExamined = "BREAST"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [round(record["pixel_spacing_mm"], 6)] * 2
    ds.PixelSpacing = [round(record["pixel_spacing_mm"], 6)] * 2
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.ViewPosition = view
    ds.StudyInstanceUID = ids["study_uid"]
    ds.SeriesInstanceUID = ids["series_uid"]
    ds.StudyID = ids.get("study_number", "1")
    ds.SeriesNumber = ids.get("series_number", 1)
    ds.InstanceNumber = ids.get("instance_number", 1)
    ds.PatientOrientation = PATIENT_ORIENTATION[(lat, view)]
    ds.ImageLaterality = lat
    code = Dataset()
    code.CodeValue, code.CodeMeaning = VIEW_CODES[view]
    code.CodingSchemeDesignator = "SCT"
    ds.ViewCodeSequence = Sequence([code])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = record["photometric"]
    ds.Rows = record["rows"]
    ds.Columns = record["cols"]
    ds.BitsAllocated = 16
    ds.BitsStored = record["bits_stored"]
    ds.HighBit = record["bits_stored"] - 1
    ds.PixelRepresentation = 0
    ds.PixelPaddingValue = record["padding_value"]
    ds.BurnedInAnnotation = "YES" if record["burned_in_label"] else "NO"
    ds.WindowCenter = record["window_center"]
    ds.WindowWidth = record["window_width"]
    if record["voi_lut_function"] != "LINEAR":
        ds.VOILUTFunction = record["voi_lut_function"]
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.LossyImageCompression = "00"
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"
    ds.OrganExposed = "BREAST"
    return ds


def write_dicom(path: Path, ds: Dataset, pixels: np.ndarray) -> None:
    """Attach ``pixels`` (uint16) to ``ds`` and write it atomically to ``path``."""
    if pixels.dtype != np.uint16 or pixels.shape != (ds.Rows, ds.Columns):
        raise ValueError(f"{path}: pixels must be uint16 of shape {(ds.Rows, ds.Columns)}")
    save(path, ds, np.ascontiguousarray(pixels, dtype="<u2").tobytes())
    del ds.PixelData


def save(path, ds: Dataset, pixel_data: bytes, transfer_syntax=ExplicitVRLittleEndian) -> None:
    """Give ``ds`` its file meta and ``pixel_data`` (already encoded in ``transfer_syntax``) and
    write it atomically to ``path``: the one DICOM file writer of every layout."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    ds.PixelData = pixel_data
    if transfer_syntax.is_encapsulated:
        ds["PixelData"].VR = "OB"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with publish.atomic_open(path, "wb", fsync_dir=False) as fh:
        ds.save_as(fh, enforce_file_format=True)
