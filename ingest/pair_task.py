"""One pair's work in a build: decode, normalise, register, write the cache entry (and tile it).

``prepare_pair`` runs as one Dask task per pair (``ingest.pipeline``); it reads nothing but its
pair's files and writes nothing but its cache entry, so pairs run in any order on any worker.
"""
from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import numpy as np

from ingest import packing, report as report_mod
from ingest.cache import PairCache, PairRecord, file_fingerprint
from ingest.pairing import ExamPair
from ingest.params import PairParams, QualityParams, TileParams


def pair_inputs(pair: ExamPair) -> dict:
    """What identifies a pair's inputs (its files and their annotations) for the cache key."""
    return {side: {**img.to_dict(), "file": file_fingerprint(img.path)}
            for side, img in (("left", pair.left), ("right", pair.right))}


def _roi_boxes(img) -> np.ndarray:
    return np.array([r.box for r in img.rois], dtype=np.float64).reshape(-1, 4)


def _roi_area(img) -> float:
    b = _roi_boxes(img)
    return float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum()) if len(b) else 0.0


def prepare_pair(pair: ExamPair, cache: PairCache, params: PairParams,
                 tiling: TileParams | None = None) -> dict:
    """Decode, normalise and register one pair into the cache; a small summary comes back.

    With ``tiling`` a newly registered pair is also tiled from the masks still in memory, its
    index rows returned under ``"tiled"``: the tile stage then only reads the masks of pairs
    found in the cache. Expected failures (unreadable file, no breast, registration error) come
    back as ``{"status": "failed", "reason", "detail", "item"}``, never as exceptions.
    """
    import pydicom

    from ingest import decode, normalize, register

    clock = report_mod.StageClock()
    result = {"pair_id": pair.pair_id, "patient": pair.patient, "entry": None, **clock.result()}
    try:
        inputs = pair_inputs(pair)
    except OSError as exc:
        return {**result, "status": "failed", "reason": "missing file", "detail": str(exc),
                "item": getattr(exc, "filename", "") or pair.left.path}
    name = cache.entry_name(pair.pair_id, inputs)
    result["entry"] = name
    if cache.has(name):
        return {**result, "status": "cached", "quality": cache.record(name).quality}

    images, norm = {}, {}
    for side, img in (("left", pair.left), ("right", pair.right)):
        t = clock.start()
        try:
            ds = pydicom.dcmread(img.path)
            # Decoded here, so decode and normalise are timed apart (JPEG 2000 maybe reduced).
            stored = decode.stored_pixels(ds, tuple(params.out_shape), crop=params.normalize.crop,
                                          reduced_decode=params.normalize.reduced_decode)
        except Exception as exc:  # noqa: BLE001 - a bad file is reported, not raised
            return {**result, "status": "failed", "reason": "unreadable", "item": img.path,
                    "detail": f"{type(exc).__name__}: {exc}"}
        clock.add("decode", t)
        t = clock.start()
        try:
            norm[side] = normalize.normalize_dataset(ds, out_shape=tuple(params.out_shape),
                                                     stored=stored, **asdict(params.normalize))
        except Exception as exc:  # noqa: BLE001
            return {**result, "status": "failed", "reason": "normalisation failed", "item": img.path,
                    "detail": f"{type(exc).__name__}: {exc}"}
        clock.add("normalise", t)
        images[side] = img
        del ds, stored

    fixed = register.choose_fixed(bool(pair.left.rois), bool(pair.right.rois),
                                  _roi_area(pair.left), _roi_area(pair.right))
    moving = "right" if fixed == "left" else "left"
    t = clock.start()
    try:
        reg = register.register_pair(norm[fixed].pixels, norm[moving].pixels, norm[fixed].mask,
                                     norm[moving].mask, threads=1, **asdict(params.registration))
    except Exception as exc:  # noqa: BLE001
        return {**result, "status": "failed", "reason": "registration failed",
                "item": pair.pair_id, "detail": f"{type(exc).__name__}: {exc}"}
    clock.add("register", t)

    pixels = {fixed: norm[fixed].pixels, moving: reg.moved}
    masks = {fixed: norm[fixed].mask, moving: reg.moved_mask}
    rois = {}
    for side in ("left", "right"):
        img = images[side]
        boxes = norm[side].map_boxes(_roi_boxes(img)) if img.rois else np.zeros((0, 4))
        if side == moving and len(boxes):
            boxes = register.map_boxes_to_fixed(reg.transform, boxes)
        rois[side] = [[round(float(v), 3) for v in box] + [roi.label]
                      for box, roi in zip(boxes, img.rois)]
    quality = {k: v if isinstance(v, str) else float(v) for k, v in reg.quality().items()}
    record = PairRecord(
        pair_id=pair.pair_id, dataset=pair.dataset, patient=pair.patient, study=pair.study,
        view=pair.view, registered_side=moving,
        source={"left": pair.left.image_id, "right": pair.right.image_id},
        rois=rois, quality=quality, transform=reg.transform,
        shape=list(norm["left"].pixels.shape),
        geometry={s: norm[s].meta() for s in ("left", "right")},
        roi_info={s: [{"birads": r.birads, "outcome": r.outcome} for r in images[s].rois]
                  for s in rois},
        birads={"left": pair.left.birads, "right": pair.right.birads},
        outcome=pair.left.outcome or pair.right.outcome, bits=16)
    t = clock.start()
    cache.write_record(name, np.stack([pixels["left"], pixels["right"]]),
                       np.stack([masks["left"], masks["right"]]), record)
    clock.add("cache_write", t)
    if tiling is not None:
        t = clock.start()
        stored = PairRecord.from_attrs(record.to_attrs())   # the values tile_entry reads back
        result["tiled"] = packing.tile_rows(name, stored, np.stack([masks["left"], masks["right"]]),
                                            **asdict(tiling))
        clock.add("tile", t)
    return {**result, "status": "registered", "quality": quality}


def check_quality(quality: dict, thresholds: QualityParams) -> tuple[bool, str]:
    """``(ok, reason)`` of a pair's quality figures (as reported) against the thresholds."""
    from ingest import register

    return register.passes_quality(SimpleNamespace(**quality), asdict(thresholds))
