"""Laterality, view and identity of a mammogram from its DICOM header.

Real headers are messy: laterality sits in ImageLaterality (0020,0062) or in the series'
Laterality (0020,0060); the view in ViewPosition or in ViewCodeSequence (SNOMED codes); some
files carry neither and only say it in SeriesDescription, ProtocolName or the file name. The
functions here try the standard tags first and fall back to those texts.
"""
from __future__ import annotations

import re

LATERALITIES = ("L", "R")
VIEWS = ("CC", "MLO")

# ViewCodeSequence codes (SNOMED RT and SNOMED CT) and meanings for the two screening views.
_VIEW_CODES = {
    "R-10242": "CC", "399162004": "CC",
    "R-10226": "MLO", "399368009": "MLO",
}
_VIEW_WORDS = {
    "CC": "CC", "CRANIOCAUDAL": "CC", "CRANIO-CAUDAL": "CC",
    "MLO": "MLO", "MEDIOLATERALOBLIQUE": "MLO", "MEDIO-LATERALOBLIQUE": "MLO",
    "MEDIO-LATERAL OBLIQUE": "MLO",
}
_TEXT_FIELDS = ("SeriesDescription", "ProtocolName", "ImageComments", "AcquisitionDeviceProcessingDescription")
_TOKEN = re.compile(r"[A-Za-z]+")


def _text(ds, name: str) -> str:
    value = ds.get(name) if ds is not None else None
    if value is None:
        return ""
    return str(value).strip()


def laterality_from_text(text: str) -> str | None:
    """'L'/'R' from free text such as 'L CC', 'RMLO', 'left_mlo.dcm'; None if absent or both."""
    found = set()
    for token in _TOKEN.findall(text.upper()):
        if token in ("L", "LEFT") or (token[:1] == "L" and token[1:] in VIEWS):
            found.add("L")
        elif token in ("R", "RIGHT") or (token[:1] == "R" and token[1:] in VIEWS):
            found.add("R")
    return found.pop() if len(found) == 1 else None


def view_from_text(text: str) -> str | None:
    """'CC'/'MLO' from free text such as 'L CC', 'RMLO', 'cranio-caudal'; None if absent or both."""
    found = set()
    upper = text.upper()
    for phrase in ("CRANIO-CAUDAL", "CRANIOCAUDAL", "MEDIO-LATERAL OBLIQUE", "MEDIOLATERAL OBLIQUE"):
        if phrase in upper:
            found.add("CC" if "CAUDAL" in phrase else "MLO")
    for token in _TOKEN.findall(upper):
        if token in VIEWS:
            found.add(token)
        elif token[:1] in LATERALITIES and token[1:] in VIEWS:
            found.add(token[1:])
    return found.pop() if len(found) == 1 else None


def laterality(ds, fallback_text: str = "") -> tuple[str | None, str]:
    """(laterality, where it came from); laterality is None when nothing says it."""
    for tag in ("ImageLaterality", "Laterality"):
        value = _text(ds, tag).upper()
        if value in LATERALITIES:
            return value, tag
    for name in _TEXT_FIELDS:
        value = laterality_from_text(_text(ds, name))
        if value:
            return value, name
    value = laterality_from_text(fallback_text)
    return (value, "filename") if value else (None, "")


def view(ds, fallback_text: str = "") -> tuple[str | None, str]:
    """(view, where it came from); view is None when unknown or not CC/MLO."""
    value = _text(ds, "ViewPosition").upper()
    if value in VIEWS:
        return value, "ViewPosition"
    for item in (ds.get("ViewCodeSequence") or []) if ds is not None else []:
        code = str(item.get("CodeValue", "")).strip()
        if code in _VIEW_CODES:
            return _VIEW_CODES[code], "ViewCodeSequence"
        meaning = str(item.get("CodeMeaning", "")).strip().upper()
        if meaning in _VIEW_WORDS:
            return _VIEW_WORDS[meaning], "ViewCodeSequence"
    for name in _TEXT_FIELDS:
        found = view_from_text(_text(ds, name))
        if found:
            return found, name
    found = view_from_text(fallback_text)
    return (found, "filename") if found else (None, "")


def identity(ds) -> dict:
    """Patient, study and image ids from the header ('' where a tag is missing)."""
    return {
        "patient": _text(ds, "PatientID"),
        "study": _text(ds, "StudyInstanceUID"),
        "image_id": _text(ds, "SOPInstanceUID"),
    }
