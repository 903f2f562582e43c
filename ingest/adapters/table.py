"""The exam table: one row per image, whatever the dataset it came from."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Roi:
    """A finding as a box in the original image's pixels: ``box`` = ``(x0, y0, x1, y1)``."""

    box: tuple[float, float, float, float]
    label: str                      # e.g. "Mass", "Suspicious Calcification"
    birads: str | None = None       # finding BI-RADS ("4"), when the dataset gives one
    outcome: str | None = None      # Benign / Malignant, when the dataset gives one per finding


@dataclass(frozen=True)
class ExamImage:
    dataset: str
    patient: str
    study: str
    view: str                       # "CC" or "MLO"
    laterality: str                 # "L" or "R"
    path: str                       # the DICOM file
    image_id: str
    rois: tuple[Roi, ...] = ()
    birads: str | None = None       # breast-level BI-RADS ("1".."5")
    outcome: str | None = None      # Normal / Benign / Malignant / Interval Cancer, when known

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rois"] = [{"box": list(r.box), "label": r.label, "birads": r.birads,
                        "outcome": r.outcome} for r in self.rois]
        return out


@dataclass(frozen=True)
class Skip:
    """An input the adapter (or a later stage) left out, and why."""

    item: str                       # a path or an image id
    reason: str                     # short reason class, e.g. "unreadable", "missing laterality"
    detail: str = ""

    def to_dict(self) -> dict:
        return {"item": self.item, "reason": self.reason, "detail": self.detail}


@dataclass
class ExamTable:
    dataset: str
    images: list[ExamImage] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    adjusted: list[Skip] = field(default_factory=list)   # kept, but changed (a clipped box)

    @property
    def read(self) -> int:
        """Images the adapter looked at: kept plus skipped."""
        return len(self.images) + len(self.skipped)

    def to_frame(self):
        import pandas as pd

        rows = [{**img.to_dict(), "n_rois": len(img.rois)} for img in self.images]
        return pd.DataFrame(rows)


def normalise_birads(value) -> str | None:
    """'BI-RADS 4' / 'BIRADS4' / 4 / '4a' → '4' / '4'; empty and NaN → None."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.lower() in ("nan", "none"):
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits[:1] or None
