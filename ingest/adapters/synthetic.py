"""The embedded default dataset: synthetic bilateral mammograms, generated on first use.

The generator (``ingest.synth``) writes the VinDr-Mammo layout into
``<cache-dir>/synthetic-<params-hash>``; the folder is written under a temporary name and renamed
when complete, so a later run (or a run killed during generation and started again) reuses it or
starts afresh, never a half-written folder. The images are read back by the VinDr-Mammo adapter,
relabelled as dataset ``synthetic``. The VinDr-Mammo layout has no outcome and no patient id
(one study per patient); the generator's ``ground_truth.json`` supplies both here, so the
synthetic set serves every downstream task (real datasets have no such file).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

from ingest.adapters import vindr
from ingest.adapters.table import ExamImage, ExamTable
from ingest.cache import digest

DATASET = "synthetic"
DEFAULT_PATIENTS = 24
DEFAULT_LESION_FRACTION = 0.3
DEFAULT_IMAGE_SIZE = (1280, 1024)     # modest: normalised to 1152x896 anyway
GENERATOR_VERSION = 1


def default_cache_dir() -> Path:
    base = os.environ.get("MAMMO_PAIRS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mammo-pairs")
    return Path(base)


def generation_params(patients: int, seed: int, image_size, lesion_fraction: float) -> dict:
    """What the generated folder depends on, the generator's own version included."""
    import ingest.synth

    return {"layout": "vindr", "patients": int(patients), "seed": int(seed),
            "image_size": list(image_size) if image_size else None,
            "lesion_fraction": float(lesion_fraction), "version": GENERATOR_VERSION,
            "generator_version": getattr(ingest.synth, "GENERATOR_VERSION", None)}


def ensure_generated(cache_dir=None, *, patients: int = DEFAULT_PATIENTS, seed: int = 0,
                     image_size=DEFAULT_IMAGE_SIZE,
                     lesion_fraction: float = DEFAULT_LESION_FRACTION,
                     workers: int = 1, progress: bool = False) -> Path:
    """The folder of the synthetic dataset for these parameters, generated if missing."""
    from ingest.synth import generate

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    params = generation_params(patients, seed, image_size, lesion_fraction)
    final = cache_dir / f"synthetic-{digest(params, 12)}"
    if (final / vindr.BREAST_CSV).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-synthetic-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        generate(layout="vindr", patients=int(patients), out=str(tmp), seed=int(seed),
                 image_size=tuple(image_size) if image_size else None,
                 lesion_fraction=float(lesion_fraction), workers=max(1, int(workers)),
                 progress=progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / vindr.BREAST_CSV).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _with_truth(img: ExamImage, truth: dict | None) -> ExamImage:
    """Patient id and outcomes from the generator's ground truth (lesions in finding order)."""
    img = replace(img, dataset=DATASET)
    if truth is None:
        return img
    lesions = truth.get("lesions") or []
    rois = tuple(replace(roi, outcome=str(les.get("outcome", "")).capitalize() or None)
                 for roi, les in zip(img.rois, lesions)) + img.rois[len(lesions):]
    outcome = str(truth.get("patient_outcome") or "").capitalize() or None
    return replace(img, patient=str(truth.get("patient") or img.patient), rois=rois,
                   outcome=outcome)


def load(cache_dir=None, **generation) -> ExamTable:
    root = ensure_generated(cache_dir, **generation)
    table = vindr.load(root)
    truth_path = root / "ground_truth.json"
    truth = {}
    if truth_path.is_file():
        with open(truth_path) as f:
            truth = {im["image_id"]: im for im in json.load(f).get("images", [])}
    table.dataset = DATASET
    table.images = [_with_truth(img, truth.get(img.image_id)) for img in table.images]
    return table
