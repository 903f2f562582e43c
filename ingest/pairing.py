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
    """Pairs sorted by id, and the images left out (no contralateral image, a duplicate, or an
    exam whose pair id another exam already has).

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
    pairs = _drop_collisions(pairs, unpaired)
    pairs.sort(key=lambda p: p.pair_id)
    unpaired.sort(key=lambda s: (s.reason, s.item))
    return pairs, unpaired


def _drop_collisions(pairs: list[ExamPair], unpaired: list[Skip]) -> list[ExamPair]:
    """Keep one exam per pair id; report the others, both of their images, as collisions.

    Pair ids keep only ``[A-Za-z0-9_-]``, so ``P.1`` and ``P-1`` meet on ``P-1``. The exam whose
    (patient, study) sorts first keeps the id, so the choice does not depend on listing order.
    """
    by_id: dict[str, list[ExamPair]] = {}
    for pair in pairs:
        by_id.setdefault(pair.pair_id, []).append(pair)
    kept = []
    for pair_id, group in by_id.items():
        group.sort(key=lambda p: (p.patient, p.study, p.left.image_id))
        kept.append(group[0])
        first = group[0]
        for other in group[1:]:
            detail = (f"{other.patient}/{other.study}/{other.view} and {first.patient}/"
                      f"{first.study}/{first.view} both map to pair id {pair_id} (ids differ "
                      "only in characters outside [A-Za-z0-9_-]); the first is kept")
            for img in (other.left, other.right):
                unpaired.append(Skip(img.path, "pair id collision", detail))
    return kept
