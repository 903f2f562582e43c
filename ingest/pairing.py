"""Bilateral pairing: per (patient, study, view) the left and the right image of one exam."""
from __future__ import annotations

from dataclasses import dataclass

from ingest.adapters.table import ExamImage, ExamTable, Skip
from shards.schema import make_key


@dataclass(frozen=True)
class ExamPair:
    left: ExamImage
    right: ExamImage

    @property
    def dataset(self) -> str:
        return self.left.dataset

    @property
    def patient(self) -> str:
        return self.left.patient

    @property
    def study(self) -> str:
        return self.left.study

    @property
    def view(self) -> str:
        return self.left.view

    @property
    def pair_id(self) -> str:
        """A key-safe id (no dots) unique per (dataset, patient, study, view)."""
        return make_key(self.dataset, self.patient, self.study, self.view)


def pair_exams(table: ExamTable) -> tuple[list[ExamPair], list[Skip]]:
    """Pairs sorted by id, and the images left out (no contralateral image, or a duplicate).

    With several images of one side (repeats, implants views), the first by image id is used and
    the others are reported as duplicates, so the choice does not depend on listing order.
    """
    groups: dict[tuple, dict[str, list[ExamImage]]] = {}
    for img in table.images:
        sides = groups.setdefault((img.patient, img.study, img.view), {"L": [], "R": []})
        sides[img.laterality].append(img)
    pairs, unpaired = [], []
    for (patient, study, view), sides in groups.items():
        chosen = {}
        for lat, images in sides.items():
            images = sorted(images, key=lambda i: (i.image_id, i.path))
            chosen[lat] = images[0] if images else None
            for extra in images[1:]:
                unpaired.append(Skip(extra.path, "duplicate image",
                                     f"{patient}/{study}/{view}/{lat} already has {images[0].image_id}"))
        if chosen["L"] and chosen["R"]:
            pairs.append(ExamPair(left=chosen["L"], right=chosen["R"]))
        else:
            present = chosen["L"] or chosen["R"]
            missing = "R" if chosen["L"] else "L"
            unpaired.append(Skip(present.path, "missing contralateral image",
                                 f"{patient}/{study}/{view}: no {missing} image"))
    pairs.sort(key=lambda p: p.pair_id)
    unpaired.sort(key=lambda s: (s.reason, s.item))
    ids = [p.pair_id for p in pairs]
    if len(set(ids)) != len(ids):
        raise ValueError("two exams map to one pair id; patient/study ids differ only in "
                         "characters outside [A-Za-z0-9_-]")
    return pairs, unpaired
