"""Orchestration: plan, render and write N patients in parallel, then the tables and ground truth."""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from . import preview as preview_mod
from .exam import IMAGE_ORDER, PAIR_VARIATIONS, plan_patient, render_image
from .layouts import LAYOUTS, atomic_write_json

GT_DROP = ("table_rows",)          # layout-private fields kept out of ground_truth.json


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _patient_job(job: tuple) -> dict:
    """Render and write one patient (runs in a worker process)."""
    (layout_name, out, seed, index, image_size, lesion_fraction, studies, want_thumbs, variation,
     with_artefacts) = job
    out = Path(out)
    layout = LAYOUTS[layout_name]
    plan = plan_patient(seed, index, layout_name, image_size, lesion_fraction, studies, variation,
                        with_artefacts)
    ids = layout.ids(plan)
    images, thumbs = [], []
    for k in range(len(plan.studies)):
        for lat, view in IMAGE_ORDER:
            img = render_image(plan, k, lat, view)
            written = layout.write_image(out, plan, k, img, ids)
            images.append({**written, **img.record})
            if want_thumbs and k == len(plan.studies) - 1:
                thumbs.append(preview_mod.thumbnail(img.pixels, img.record))
    layout.finish_patient(out, plan, ids, images)
    title = (f"patient {ids['patient_id'][:12]}  density {plan.density}  beta {plan.beta:.2f}  "
             + (f"{plan.lesion.kind} ({plan.lesion.shape}, {plan.lesion.size_mm:.0f} mm, "
                f"{plan.lesion.conspicuity_label.lower()}, {plan.lesion.outcome}) on {plan.lesion_side}"
                if plan.lesion else "normal"))
    return {"index": index, "images": images, "preview": {"title": title, "thumbs": thumbs} if thumbs else None}


def _check_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".synth-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"output folder {out} is not writable: {exc.strerror or exc}") from exc


def _pick_preview(seed, patients, layout, image_size, lesion_fraction, studies, count=4) -> set[int]:
    """Among the first patients: lesions first (the most conspicuous, varied in kind and shape),
    and one normal exam for comparison."""
    lesion, normal = [], []
    for i in range(min(patients, 64)):
        plan = plan_patient(seed, i, layout, image_size, lesion_fraction, studies)
        if plan.lesion is None:
            normal.append(i)
        else:
            lesion.append((-plan.lesion.conspicuity, i, (plan.lesion.kind, plan.lesion.shape)))
    lesion.sort()
    chosen, kinds = [], set()
    n_les = min(len(lesion), count - 1 if normal else count)
    for _, i, kind in lesion:                 # one of each kind first, then the rest
        if len(chosen) < n_les and kind not in kinds:
            chosen.append(i)
            kinds.add(kind)
    chosen += [i for _, i, _ in lesion if i not in chosen][:n_les - len(chosen)]
    chosen += normal[:count - len(chosen)]
    return set(chosen)                        # shown in patient order


def generate(layout: str = "vindr", patients: int = 10, out="synth", seed: int = 0, image_size=None,
             lesion_fraction: float = 0.3, workers: int = 1, studies_per_patient=(1, 2),
             progress: bool = True, preview=None, pair_variation: str = "realistic",
             artefacts: bool = False) -> dict:
    """Write ``patients`` synthetic patients in ``layout`` under ``out``; returns a summary.

    image_size: None for detector sizes (3328x2560 or 2294x1914), or (rows, cols).
    studies_per_patient: (min, max) screening studies per patient.
    preview: path of a contact-sheet PNG of a few exams, or None.
    pair_variation: "realistic" (default: the two breasts share only the low-frequency tissue
    pattern) or "positioning-only" (the right breast is the left one mirrored; the two images
    differ only by their positioning and detector noise, and a lesion if any); see
    ``exam.PAIR_VARIATIONS``.
    artefacts: some images get what real archives carry around the breast (film edges and
    scanner strips for CBIS-DDSM, collimation edges for the digital layouts, markers, rulers,
    text) and the two sides differ more in size and compression (``synth.artefacts``); each
    image's ground truth lists them under "artefacts" (kinds and boxes).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    if int(patients) <= 0:
        raise ValueError(f"patients must be positive, got {patients}")
    if not 0.0 <= float(lesion_fraction) <= 1.0:
        raise ValueError(f"lesion_fraction must be in [0, 1], got {lesion_fraction}")
    if image_size is not None and (len(image_size) != 2 or min(image_size) < 64):
        raise ValueError(f"image_size must be (rows, cols) of at least 64, got {image_size}")
    if pair_variation not in PAIR_VARIATIONS:
        raise ValueError(f"pair_variation must be one of {', '.join(PAIR_VARIATIONS)}, got {pair_variation!r}")
    lo, hi = studies_per_patient
    if getattr(LAYOUTS[layout], "one_study", False):   # CBIS-DDSM, RSNA: one exam per patient
        lo = hi = 1
    if not 1 <= lo <= hi:
        raise ValueError(f"studies_per_patient must be (min, max) with 1 <= min <= max, got {studies_per_patient}")
    workers = max(1, int(workers))
    out = Path(out)
    _check_out(out)
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
    show = _pick_preview(seed, patients, layout, size, lesion_fraction, (lo, hi)) if preview else set()
    jobs = [(layout, str(out), int(seed), i, size, float(lesion_fraction), (lo, hi), i in show,
             pair_variation, bool(artefacts)) for i in range(int(patients))]
    start = time.perf_counter()
    bar = tqdm(total=len(jobs), desc=f"synth {layout}", unit="patient", disable=not progress)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_patient_job(job))
            bar.update(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for res in pool.map(_patient_job, jobs):
                results.append(res)
                bar.update(1)
    bar.close()
    results.sort(key=lambda r: r["index"])
    images = [im for r in results for im in r["images"]]
    LAYOUTS[layout].write_tables(out, images)
    gt = {"generator": "ingest.synth", "layout": layout, "seed": int(seed), "patients": int(patients),
          "image_size": list(size) if size else None, "lesion_fraction": float(lesion_fraction),
          "studies_per_patient": [lo, hi],
          # Recorded only when not the default, so that default outputs keep their bytes.
          **({"pair_variation": pair_variation} if pair_variation != "realistic" else {}),
          **({"artefacts": True} if artefacts else {}),
          "box_format": "[xmin, ymin, xmax, ymax], max exclusive",
          "images": [{k: v for k, v in im.items() if k not in GT_DROP} for im in images]}
    atomic_write_json(out / "ground_truth.json", gt)
    if preview:
        sheets = [r["preview"] for r in results if r["preview"]]
        preview_mod.contact_sheet(sheets, preview)
    seconds = time.perf_counter() - start
    return {"layout": layout, "out": str(out), "patients": int(patients),
            "studies": len({(im["patient"], im["study"]) for im in images}), "images": len(images),
            "lesion_images": sum(1 for im in images if im["lesions"]),
            "seconds": round(seconds, 3), "images_per_second": round(len(images) / max(seconds, 1e-9), 3),
            "preview": str(preview) if preview else None}
