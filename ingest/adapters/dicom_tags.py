"""Laterality, view and identity of a mammogram from its DICOM header and its path.

Real headers are messy: laterality sits in ImageLaterality (0020,0062) or in the series'
Laterality (0020,0060); the view in ViewPosition or in ViewCodeSequence (SNOMED codes); many
files carry neither and only say it in tags meant for something else (the patient id
``P_00001_LEFT_CC``, the accession number, the series or study description, PatientOrientation)
or in the file and folder names (``LEFT_CC``, ``R MLO``, ``RCC``, ``L_MLO``). The functions here
try the standard tags first, then those tags, then the path, and say where the value came from:
the tag's keyword, ``filename`` or ``folder``.
"""
from __future__ import annotations

import re
from pathlib import PurePath

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
# Tags that are not meant to hold the side or the view but often do, in the order they are
# trusted: free-text descriptions first, then identifiers that archives build from the side and
# view (CBIS-DDSM's patient id is ``Mass-Training_P_00001_LEFT_CC``).
TEXT_TAGS = ("PatientOrientation", "SeriesDescription", "ProtocolName", "ImageComments",
             "AcquisitionDeviceProcessingDescription", "PatientID", "AccessionNumber",
             "StudyDescription")
_TOKEN = re.compile(r"[A-Za-z]+")
_PHRASES = (("CRANIO-CAUDAL", "CC"), ("CRANIOCAUDAL", "CC"), ("CRANIO CAUDAL", "CC"),
            ("MEDIO-LATERAL OBLIQUE", "MLO"), ("MEDIOLATERAL OBLIQUE", "MLO"),
            ("MEDIO-LATERAL-OBLIQUE", "MLO"), ("MEDIO LATERAL OBLIQUE", "MLO"))


def tag_text(ds, name: str) -> str:
    """A tag's value as stripped text ('' when missing); several values joined by backslashes,
    as DICOM writes them (PatientOrientation ``A\\R``)."""
    value = ds.get(name) if ds is not None else None
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value).strip()
    return str(getattr(value, "value", value)).strip()


_text = tag_text   # the name this helper had before


def tokens(text: str) -> list[str]:
    """The letter runs of ``text``, upper-cased: ``'P_00001_LEFT_CC'`` → ``['P', 'LEFT', 'CC']``."""
    return _TOKEN.findall(text.upper())


def _is_view(token: str) -> bool:
    return token in VIEWS or (token[:1] in LATERALITIES and token[1:] in VIEWS)


def laterality_from_text(text: str) -> str | None:
    """'L'/'R' from free text such as 'L CC', 'RMLO', 'left_mlo.dcm', 'P_00001_LEFT_CC'; None if
    absent or both.

    A bare ``L`` or ``R`` counts only as the whole text or next to a view (``L CC``, ``R_MLO``):
    ids such as ``R12345`` or ``HOLOGIC L`` must not name a side by accident.
    """
    found = set()
    words = tokens(text)
    for i, token in enumerate(words):
        if token in ("LEFT", "RIGHT"):
            found.add(token[0])
        elif token[:1] in LATERALITIES and token[1:] in VIEWS:
            found.add(token[0])
        elif token in LATERALITIES:
            beside = words[i - 1:i] + words[i + 1:i + 2]
            if text.strip().upper() == token or any(_is_view(w) for w in beside):
                found.add(token)
    return found.pop() if len(found) == 1 else None


def view_from_text(text: str) -> str | None:
    """'CC'/'MLO' from free text such as 'L CC', 'RMLO', 'cranio-caudal'; None if absent or both."""
    found = set()
    upper = text.upper()
    for phrase, view in _PHRASES:
        if phrase in upper:
            found.add(view)
    for token in tokens(upper):
        if token in VIEWS:
            found.add(token)
        elif token[:1] in LATERALITIES and token[1:] in VIEWS:
            found.add(token[1:])
    return found.pop() if len(found) == 1 else None


def orientation_code(value: str) -> tuple[str | None, str | None]:
    """(laterality, view) from a mammography PatientOrientation such as ``A\\R`` (left CC) or
    ``P\\FL`` (right MLO): the image column runs from the lateral side of the breast to the
    medial one, i.e. towards the OTHER side; an oblique column (F or H with L or R) is the MLO
    view, a plain L or R the CC view. Anything else: (None, None)."""
    parts = [p.strip().upper() for p in value.split("\\")]
    if len(parts) != 2 or not all(p and set(p) <= set("APLRHF") for p in parts):
        return None, None
    column = parts[1]
    sides = set(column) & {"L", "R"}
    if len(sides) != 1:
        return None, None
    side = "L" if sides == {"R"} else "R"
    view = "MLO" if set(column) & {"F", "H"} else "CC"
    return side, view


def path_texts(path: str) -> list[tuple[str, str]]:
    """``[(text, source)]`` of a file's path: its name (without suffix) as ``filename``, then each
    folder from the nearest one outwards as ``folder``."""
    if not path:
        return []
    p = PurePath(path)
    out = [(p.stem if p.suffix.lower() in (".dcm", ".dicom") else p.name, "filename")]
    out += [(part, "folder") for part in reversed(p.parts[:-1]) if part not in ("/", "\\", ".")]
    return out


def _from_texts(ds, path: str, parse) -> tuple[str | None, str]:
    for name in TEXT_TAGS:
        value = parse(tag_text(ds, name))
        if value:
            return value, name
    for text, source in path_texts(path):
        value = parse(text)
        if value:
            return value, source
    return None, ""


def laterality(ds, fallback_text: str = "") -> tuple[str | None, str]:
    """(laterality, where it came from); laterality is None when nothing says it.

    ``fallback_text``: the file's path (relative to the dataset's root) or name, searched after
    the header's tags."""
    path = fallback_text
    for tag in ("ImageLaterality", "Laterality"):
        value = tag_text(ds, tag).upper()
        if value in LATERALITIES:
            return value, tag
    found = _from_texts(ds, path, laterality_from_text)
    if found[0]:
        return found
    side, _ = orientation_code(tag_text(ds, "PatientOrientation"))
    return (side, "PatientOrientation") if side else (None, "")


def view(ds, fallback_text: str = "") -> tuple[str | None, str]:
    """(view, where it came from); view is None when unknown or not CC/MLO. ``fallback_text``:
    as for ``laterality``."""
    path = fallback_text
    value = tag_text(ds, "ViewPosition").upper()
    if value in VIEWS:
        return value, "ViewPosition"
    for item in (ds.get("ViewCodeSequence") or []) if ds is not None else []:
        code = str(item.get("CodeValue", "")).strip()
        if code in _VIEW_CODES:
            return _VIEW_CODES[code], "ViewCodeSequence"
        meaning = str(item.get("CodeMeaning", "")).strip().upper()
        if meaning in _VIEW_WORDS:
            return _VIEW_WORDS[meaning], "ViewCodeSequence"
    found = _from_texts(ds, path, view_from_text)
    if found[0]:
        return found
    _, code_view = orientation_code(tag_text(ds, "PatientOrientation"))
    return (code_view, "PatientOrientation") if code_view else (None, "")


def identity(ds) -> dict:
    """Patient, study and image ids from the header ('' where a tag is missing)."""
    return {
        "patient": tag_text(ds, "PatientID"),
        "study": tag_text(ds, "StudyInstanceUID"),
        "image_id": tag_text(ds, "SOPInstanceUID"),
    }
