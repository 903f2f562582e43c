"""Patients and exams of loose DICOM files, wherever the archive put them.

Real archives do not always keep one study per exam: some store every image as its own study
with its own patient id, the side and view appended to a shared patient number
(``P_00001_LEFT_CC``, ``P_00001_RIGHT_CC``...). ``patient_of`` takes the side and view out of
such an id; ``group_exams`` then puts a patient's single-image studies together into exams: by a
shared accession number (side and view taken out too), else by a shared study date, else, when
the patient has at most one image per side and view among them, all into one exam. Every value
carries where it came from, and the adapter's table counts the images per source.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ingest.adapters import dicom_tags
from ingest.adapters.table import ExamTable

_SEPARATED = re.compile(r"([_\-\s.]+)")
_SIDE_VIEW = {"L", "R", "LEFT", "RIGHT", *dicom_tags.VIEWS,
              *(s + v for s in dicom_tags.LATERALITIES for v in dicom_tags.VIEWS)}


def strip_side_view(text: str, laterality: str, view: str) -> str:
    """``text`` without its side and view segments (``P_00001_LEFT_CC`` → ``P_00001``), or ``text``
    unchanged when it does not name this image's side or view (an id that happens to hold an
    ``R`` segment is not cut)."""
    parts = _SEPARATED.split(text.strip())
    words, seps = parts[0::2], parts[1::2]
    upper = [w.upper() for w in words]
    names_it = any(w in (laterality, "LEFT" if laterality == "L" else "RIGHT", view,
                         laterality + view) for w in upper)
    if not names_it:
        return text.strip()
    kept = []
    for i, (word, up) in enumerate(zip(words, upper)):
        if up in _SIDE_VIEW or not word:
            continue
        if kept:
            kept.append(seps[i - 1] if i - 1 < len(seps) else "_")
        kept.append(word)
    stripped = "".join(kept).strip("_-. ")
    return stripped or text.strip()


@dataclass
class FileIds:
    """What one file's header and path say about who and which exam it belongs to."""

    path: str
    laterality: str
    view: str
    patient_id: str          # PatientID as written
    study_uid: str
    accession: str
    study_date: str
    top_folder: str          # the first folder below the dataset's root ('' at the root)


def patient_of(ids: FileIds) -> tuple[str, str]:
    """(patient, source): PatientID (with the side and view taken out when it holds them), else
    the top folder's name likewise."""
    for text, source in ((ids.patient_id, "PatientID"), (ids.top_folder, "folder")):
        if text.strip():
            stripped = strip_side_view(text, ids.laterality, ids.view)
            return stripped, source if stripped == text.strip() else f"{source} without side/view"
    return "", ""


def group_exams(files: list[FileIds]) -> dict[str, tuple[str, str, str, str]]:
    """Per file path: (patient, patient source, study, study source).

    A study with several images of one patient is an exam as it is (``StudyInstanceUID``). A
    patient's single-image studies are grouped by accession number, then by study date, then
    (at most one image per side and view left) into one exam; what stays alone keeps its study.
    """
    patients = {f.path: patient_of(f) for f in files}
    by_study: dict[tuple, list[FileIds]] = defaultdict(list)
    for f in files:
        by_study[(patients[f.path][0], f.study_uid)].append(f)
    out = {}
    singles: dict[str, list[FileIds]] = defaultdict(list)
    for (patient, study), members in by_study.items():
        if study and len(members) > 1:
            for f in members:
                out[f.path] = (*patients[f.path], study, "StudyInstanceUID")
        else:                 # a single-image study, or images without a StudyInstanceUID
            singles[patient].extend(members)
    for patient, members in singles.items():
        rest = members
        for source, key in (("AccessionNumber",
                             lambda f: strip_side_view(f.accession, f.laterality, f.view)),
                            ("StudyDate", lambda f: f.study_date.strip())):
            groups: dict[str, list[FileIds]] = defaultdict(list)
            for f in rest:
                if key(f):
                    groups[key(f)].append(f)
            grouped = {f.path for g in groups.values() if len(g) > 1 for f in g}
            for value, g in groups.items():
                if len(g) > 1:
                    for f in g:
                        out[f.path] = (*patients[f.path], f"{source}-{value}", source)
            rest = [f for f in rest if f.path not in grouped]
        if len(rest) > 1 and len({(f.laterality, f.view) for f in rest}) == len(rest):
            for f in rest:
                out[f.path] = (*patients[f.path], "single-image-studies",
                               "one image per side and view")
        else:
            for f in rest:
                out[f.path] = (*patients[f.path], f.study_uid, "StudyInstanceUID" if f.study_uid else "")
    return out


@dataclass
class DicomExamTable(ExamTable):
    """The exam table of loose DICOM files, with where each image's values came from."""

    sources: dict = field(default_factory=dict)   # image path → {"patient": source, ...}

    def source_counts(self) -> dict:
        """Images kept per inference source: ``{"laterality": {"ImageLaterality": 4}, ...}``."""
        counts: dict[str, Counter] = defaultdict(Counter)
        for img in self.images:
            for what, source in self.sources.get(img.path, {}).items():
                counts[what][source or "unknown"] += 1
        return {what: dict(sorted(c.items())) for what, c in sorted(counts.items())}
