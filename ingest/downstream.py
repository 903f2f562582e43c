"""The paper's labelled patch sets for the downstream tasks, from one registered pair.

For every ROI, a ``size x size`` patch centred on it (moved, never shrunk, to stay inside the
image) is cut from its side, and a patch at the same place from the contralateral side, which
serves as the normal (background) example. Both images share one grid after registration, so
"the same place" is the same box. The contralateral patch is skipped when it touches an ROI of
its own side (A > 0) or, with masks given, holds more than ``max_background`` background.

Tasks and labels:

* ``abnormal``: abnormal 1, normal 0;
* ``birads``: BI-RADS 1 → 0 (the normal patch), 3 → 1, 4 → 2, 5 → 3 (ROIs with other or no
  BI-RADS are left out of this task);
* ``outcome``: background 0 (the normal patch), benign 1, malignant 2 (an interval cancer
  counts as malignant; ROIs without a known outcome are left out of this task).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ingest.abnormal import abnormal_areas
from ingest.geometry import as_boxes, clamp_box
from ingest.tiling import cut

TASKS = ("abnormal", "birads", "outcome")
BIRADS_CLASSES = {1: 0, 3: 1, 4: 2, 5: 3}
OUTCOME_CLASSES = {"background": 0, "benign": 1, "malignant": 2}
SIDES = ("left", "right")


@dataclass(frozen=True)
class LabelledRoi:
    box: tuple[float, float, float, float]   # [y0, x0, y1, x1] on the registered grid
    birads: int | None = None
    outcome: str | None = None               # "benign" or "malignant" (None: unknown)
    label: str = ""                          # finding kind, e.g. "Mass"


def parse_birads(value) -> int | None:
    """``4``, ``"4"``, ``"4a"``, ``"BI-RADS 4"`` → 4; anything without a digit 0-6 → None."""
    if value is None:
        return None
    match = re.search(r"[0-6]", str(value))
    return int(match.group()) if match else None


def parse_outcome(value) -> str | None:
    """Benign / Malignant / Interval Cancer (any case) → ``benign`` / ``malignant``; else None."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text.startswith("benign"):
        return "benign"
    if text.startswith("malignant") or text.startswith("interval"):
        return "malignant"
    return None


def as_roi(obj) -> LabelledRoi:
    """A ``LabelledRoi`` from itself, a dict (``box``, ``birads``, ``outcome``, ``label``) or a
    list ``[y0, x0, y1, x1, (label)]`` as stored in the pair metadata."""
    if isinstance(obj, LabelledRoi):
        return obj
    if isinstance(obj, dict):
        return LabelledRoi(tuple(float(v) for v in obj["box"][:4]), parse_birads(obj.get("birads")),
                           parse_outcome(obj.get("outcome")), str(obj.get("label", "") or ""))
    seq = list(obj)
    return LabelledRoi(tuple(float(v) for v in seq[:4]), label=str(seq[4]) if len(seq) > 4 else "")


def _task_label(task: str, roi: LabelledRoi, abnormal: bool) -> tuple[int, str] | None:
    """``(label, label_name)`` of a patch for a task, or None when the ROI has no such label."""
    if task == "abnormal":
        return (1, "abnormal") if abnormal else (0, "normal")
    if task == "birads":
        if roi.birads not in BIRADS_CLASSES or roi.birads == 1:
            return None
        return (BIRADS_CLASSES[roi.birads], f"BI-RADS {roi.birads}") if abnormal else (0, "BI-RADS 1")
    if task == "outcome":
        if roi.outcome not in ("benign", "malignant"):
            return None
        return (OUTCOME_CLASSES[roi.outcome], roi.outcome) if abnormal else (0, "background")
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def labelled_patches(left: np.ndarray, right: np.ndarray, rois: dict, size: int, *,
                     tasks=TASKS, left_mask: np.ndarray | None = None,
                     right_mask: np.ndarray | None = None,
                     max_background: float = 0.5) -> list[tuple[np.ndarray, dict]]:
    """``[(patch uint16 (size, size), meta), ...]`` for the requested tasks.

    ``rois``: ``{"left": [roi, ...], "right": [...]}`` with each roi accepted by ``as_roi``.
    ``meta``: ``task``, ``label``, ``label_name``, ``box`` ([y0, x0, y1, x1]), ``side`` (where
    the patch was cut), ``roi_side`` and ``roi`` (the ROI that placed it, by index).
    """
    images = {"left": left, "right": right}
    masks = {"left": left_mask, "right": right_mask}
    if left.shape != right.shape:
        raise ValueError(f"left {left.shape} and right {right.shape} differ in shape")
    parsed = {s: [as_roi(r) for r in rois.get(s, ())] for s in SIDES}
    out: list[tuple[np.ndarray, dict]] = []
    seen_normal: set[tuple] = set()
    for side in SIDES:
        other = "right" if side == "left" else "left"
        other_boxes = as_boxes([r.box for r in parsed[other]])
        for index, roi in enumerate(parsed[side]):
            y0, x0, y1, x1 = roi.box
            box = clamp_box((y0 + y1) / 2, (x0 + x1) / 2, size, left.shape)
            normal_ok = not (len(other_boxes) and abnormal_areas([box], other_boxes).max() > 0)
            if normal_ok and masks[other] is not None:
                normal_ok = 1.0 - float(cut(masks[other], box).mean()) <= max_background
            for task in tasks:
                for abnormal, cut_side in ((True, side), (False, other)):
                    label = _task_label(task, roi, abnormal)
                    if label is None or (not abnormal and not normal_ok):
                        continue
                    if not abnormal:   # one normal patch per place and task
                        if (task, cut_side, box) in seen_normal:
                            continue
                        seen_normal.add((task, cut_side, box))
                    meta = {"task": task, "label": label[0], "label_name": label[1],
                            "box": list(box), "side": cut_side, "roi_side": side, "roi": index}
                    out.append((cut(images[cut_side], box), meta))
    return out
