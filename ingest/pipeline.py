"""Dask orchestration of ``ingest build-shards``: exams → registered zarr cache → shards.

Stages (each a set of Dask tasks with a progress bar, except where noted):

1. ``exams``    (driver) the dataset adapter's exam table;
2. ``pairs``    (driver) left/right pairing per (patient, study, view);
3. ``register`` one task per pair: decode both DICOMs, normalise, register (the side with ROIs is
   fixed), write the pair to the zarr cache; pairs already cached are not recomputed;
4. ``tile``     grid tiles, background and border rules, abnormal area A as index rows (numbers,
   never pixels): a newly registered pair is tiled inside its register task from the masks in
   memory; a pair from the cache gets one tile task, which reads its masks back;
5. ``pack``     (driver) patient-level split, a seeded permutation per split, cut into shards;
   one task per shard reads its tiles from the cache, encodes and writes the shard;
6. ``manifest`` (driver) written last, then ``report.json``.

Parallelism is across pairs and shards; SimpleITK runs one thread per task, so results do not
depend on the number of workers.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ingest import packing, report as report_mod
from ingest.adapters import load_exams
from ingest.cache import PairCache, file_fingerprint
from ingest.pairing import ExamPair, pair_exams

DEFAULT_OUT_SHAPE = (1152, 896)


def register_defaults() -> dict:
    """register_pair's keyword defaults (all but ``threads``), read from its signature so that
    the cache key follows any change of them."""
    import inspect

    from ingest import register

    params = inspect.signature(register.register_pair).parameters.values()
    return {p.name: (list(p.default) if isinstance(p.default, tuple) else p.default)
            for p in params if p.kind is p.KEYWORD_ONLY and p.name != "threads"}


@dataclass
class RegistrationSettings:
    transform: str | None = None      # None: register.py's default ("similarity")

    def kwargs(self) -> dict:
        settings = register_defaults()
        if self.transform:
            settings["transform"] = self.transform
        return settings


@dataclass
class BuildConfig:
    dataset: str
    out: str
    size: int = 96
    root: str | None = None
    manifest_csv: str | None = None
    stride: int | None = None
    fmt: str = "png"
    seed: int = 0
    shard_size: int = 1000
    max_background: float = 0.5
    max_border_xor: float = 0.2
    out_shape: tuple = DEFAULT_OUT_SHAPE
    quality: dict = field(default_factory=dict)      # thresholds, e.g. {"dice_after": 0.85}
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    cache_dir: str | None = None
    patients: int | None = None                      # synthetic only
    image_size: tuple | None = None                  # synthetic only
    lesion_fraction: float | None = None             # synthetic only (None: the generator's)
    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    progress: bool = True

    def thresholds(self) -> dict:
        """The quality thresholds in force: register.py's defaults updated by ``quality``."""
        from ingest import register

        return dict(sorted({**register.DEFAULT_THRESHOLDS, **self.quality}.items()))

    @property
    def effective_stride(self) -> int:
        return int(self.stride or self.size)

    def cache_params(self) -> dict:
        """What changes the registered pixels (NOT the tile size: --size 96 and 256 share it)."""
        return {"out_shape": list(self.out_shape), "registration": self.registration.kwargs(),
                "normalize": {"voi": "auto", "crop": "none"}}

    def build_params(self) -> dict:
        """The manifest's params: what changes the shards' bytes (no paths, no worker counts)."""
        return {"dataset": self.dataset, "size": int(self.size), "stride": self.effective_stride,
                "format": self.fmt, "seed": int(self.seed), "shard_size": int(self.shard_size),
                "max_background": float(self.max_background),
                "max_border_xor": float(self.max_border_xor),
                "quality": self.thresholds(), **self.cache_params(),
                **self._synthetic_params()}

    def _synthetic_params(self) -> dict:
        if self.dataset != "synthetic":
            return {"patients": None, "image_size": None, "lesion_fraction": None}
        from ingest.adapters import synthetic

        fraction = synthetic.DEFAULT_LESION_FRACTION if self.lesion_fraction is None \
            else self.lesion_fraction
        return {"patients": int(self.patients or synthetic.DEFAULT_PATIENTS),
                "image_size": list(self.image_size or synthetic.DEFAULT_IMAGE_SIZE),
                "lesion_fraction": float(fraction)}


# ------------------------------------------------------------------ the register task


def pair_inputs(pair: ExamPair) -> dict:
    """What identifies a pair's inputs (its files and their annotations) for the cache key."""
    return {side: {**img.to_dict(), "file": file_fingerprint(img.path)}
            for side, img in (("left", pair.left), ("right", pair.right))}


def _roi_boxes(img) -> np.ndarray:
    return np.array([r.box for r in img.rois], dtype=np.float64).reshape(-1, 4)


def _roi_area(img) -> float:
    b = _roi_boxes(img)
    return float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum()) if len(b) else 0.0


def prepare_pair(pair: ExamPair, cache: PairCache, settings: RegistrationSettings,
                 out_shape=DEFAULT_OUT_SHAPE, tiling: dict | None = None) -> dict:
    """Decode, normalise and register one pair into the cache; a small summary comes back.

    With ``tiling`` (``packing.tile_rows``'s size, stride, max_background, max_border_xor) a
    newly registered pair is also tiled from the masks still in memory, its index rows returned
    under ``"tiled"``: the tile stage then only reads the masks of pairs found in the cache.
    Expected failures (unreadable file, no breast, registration error) come back as
    ``{"status": "failed", "reason", "detail", "item"}``, never as exceptions.
    """
    import pydicom

    from ingest import normalize, register

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
        return {**result, "status": "cached", "quality": cache.attrs(name)["quality"]}

    images, norm = {}, {}
    for side, img in (("left", pair.left), ("right", pair.right)):
        t = clock.start()
        try:
            ds = pydicom.dcmread(img.path)
            ds.pixel_array  # decode now (cached on ds), so decode and normalise are timed apart
        except Exception as exc:  # noqa: BLE001 - a bad file is reported, not raised
            return {**result, "status": "failed", "reason": "unreadable", "item": img.path,
                    "detail": f"{type(exc).__name__}: {exc}"}
        clock.add("decode", t)
        t = clock.start()
        try:
            norm[side] = normalize.normalize_dataset(ds, out_shape=tuple(out_shape))
        except Exception as exc:  # noqa: BLE001
            return {**result, "status": "failed", "reason": "normalisation failed", "item": img.path,
                    "detail": f"{type(exc).__name__}: {exc}"}
        clock.add("normalise", t)
        images[side] = img
        del ds

    fixed = register.choose_fixed(bool(pair.left.rois), bool(pair.right.rois),
                                  _roi_area(pair.left), _roi_area(pair.right))
    moving = "right" if fixed == "left" else "left"
    t = clock.start()
    try:
        reg = register.register_pair(norm[fixed].pixels, norm[moving].pixels, norm[fixed].mask,
                                     norm[moving].mask, threads=1, **settings.kwargs())
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
    quality = {k: float(v) for k, v in reg.quality().items()}
    attrs = {
        "pair_id": pair.pair_id, "dataset": pair.dataset, "patient": pair.patient,
        "study": pair.study, "view": pair.view, "registered_side": moving,
        "source": {"left": pair.left.image_id, "right": pair.right.image_id},
        "rois": rois,
        "roi_info": {s: [{"birads": r.birads, "outcome": r.outcome} for r in images[s].rois]
                     for s in rois},
        "birads": {"left": pair.left.birads, "right": pair.right.birads},
        "outcome": pair.left.outcome or pair.right.outcome,
        "quality": quality, "transform": reg.transform, "bits": 16,
        "shape": list(norm["left"].pixels.shape),
        "geometry": {s: norm[s].meta() for s in ("left", "right")},
    }
    t = clock.start()
    cache.write(name, np.stack([pixels["left"], pixels["right"]]),
                np.stack([masks["left"], masks["right"]]), attrs)
    clock.add("cache_write", t)
    if tiling is not None:
        t = clock.start()
        stored = json.loads(json.dumps(attrs))   # the values tile_entry would read back
        result["tiled"] = packing.tile_rows(name, stored, np.stack([masks["left"], masks["right"]]),
                                            **tiling)
        clock.add("tile", t)
    return {**result, "status": "registered", "quality": quality}


def check_quality(quality: dict, thresholds: dict) -> tuple[bool, str]:
    from ingest import register

    return register.passes_quality(SimpleNamespace(**quality), thresholds or None)


# ------------------------------------------------------------------ Dask plumbing


@contextmanager
def dask_client(workers: int | None = None, threads_per_worker: int = 1, scheduler: str | None = None,
                quiet: bool = False):
    """A distributed Client: to ``scheduler`` when given, else a LocalCluster of processes."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        import dask

        n = int(workers or os.cpu_count() or 1)
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
        # adaptive mmap threshold: every array of a few MB is then a fresh mmap whose pages
        # fault in again, and the normalisation (full-size float images) costs about twice
        # the CPU. Tasks free their arrays at the end, so the default allocator is kept.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
            cluster = LocalCluster(n_workers=n, threads_per_worker=int(threads_per_worker),
                                   processes=True, silence_logs=logging.ERROR,
                                   dashboard_address="127.0.0.1:0")
        client = Client(cluster)
    try:
        if not quiet:
            link = getattr(client, "dashboard_link", None)
            n_workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            print(f"dask: {n_workers} worker(s) at {client.scheduler.address}"
                  + (f", dashboard {link}" if link else ""), file=sys.stderr)
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_stage(client, name: str, func, items, *, progress: bool = True, **kwargs) -> list:
    """Map ``func`` over ``items`` on the cluster; results in ``items`` order.

    A task that raises is returned as ``{"status": "error", "detail": ...}`` so that one bad
    input never stops the others.
    """
    from distributed import as_completed
    from tqdm import tqdm

    if not items:
        return []
    # retries: a task lost with its worker (killed, out of memory) runs again elsewhere; tasks
    # are idempotent (cache entries and shards are written atomically under fixed names).
    futures = [client.submit(func, item, pure=False, retries=2, **kwargs) for item in items]
    position = {f.key: i for i, f in enumerate(futures)}
    results: list = [None] * len(futures)
    with tqdm(total=len(futures), desc=name, unit="task", disable=not progress, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for future in as_completed(futures):
            i = position[future.key]
            try:
                results[i] = future.result()
            except Exception as exc:  # noqa: BLE001
                results[i] = {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
            future.release()
            bar.update(1)
    return results


# ------------------------------------------------------------------ the build


def _register_stage(config: BuildConfig, rep, c, cache: PairCache, pairs,
                    tiling: dict | None = None) -> list:
    """Register (or reuse) every pair; returns the accepted ``(pair, result)`` in pair order."""
    with rep.stage("register"):
        prepared = run_stage(c, "register", prepare_pair, pairs, progress=config.progress,
                             cache=cache, settings=config.registration,
                             out_shape=tuple(config.out_shape), tiling=tiling)
    accepted = []
    for pair, res in zip(pairs, prepared):
        rep.pair_prepared(res)
        if res.get("status") in ("registered", "cached"):
            ok, why = check_quality(res["quality"], config.thresholds())
            if ok:
                accepted.append((pair, res))
                rep.pair_used(pair, res)
            else:
                rep.pair_rejected(pair, "quality below threshold", why, res.get("quality"))
        else:
            rep.pair_rejected(pair, res.get("reason", "error"), res.get("detail", ""),
                              item=res.get("item"))
    rep.task_seconds(prepared)
    return accepted


def _exams_and_pairs(config: BuildConfig, rep, cache_root: Path):
    # The synthetic set is always generated with seed 0: --seed changes splits and shuffles only.
    with rep.stage("exams"):
        table = load_exams(config.dataset, config.root, manifest=config.manifest_csv,
                           cache_dir=cache_root, patients=config.patients, seed=0,
                           image_size=config.image_size,
                           lesion_fraction=config.lesion_fraction,
                           workers=config.workers or os.cpu_count() or 1)
    rep.exams(table)
    with rep.stage("pairs"):
        pairs, unpaired = pair_exams(table)
    rep.pairing(pairs, unpaired)
    return pairs


def _pack_stage(config: BuildConfig, rep, c, task_func, plans, **kwargs) -> list:
    with rep.stage("pack"):
        written = run_stage(c, "pack", task_func, plans, progress=config.progress, **kwargs)
    errors = [w for w in written if w.get("status") == "error"]
    if errors:
        raise RuntimeError(f"{len(errors)} shard(s) failed to write: {errors[0]['detail']}")
    rep.task_seconds(written)
    return [w["record"] for w in written]


def _finish(config: BuildConfig, rep, out: Path, records, params: dict, cache: PairCache,
            kind: str) -> dict:
    with rep.stage("manifest"):
        packing.remove_stale_shards(out, {r["name"] for r in records})
        manifest = packing.write_build_manifest(out, records, params, cache.params_hash, kind)
    rep.samples(manifest)
    rep.cache(str(cache.root), cache.params_hash)
    rep.write(out)
    return rep.data


def _start(config: BuildConfig, params: dict):
    # Absolute paths: tasks may run in workers started elsewhere (--scheduler, shared disk).
    for name in ("out", "root", "cache_dir", "manifest_csv"):
        if getattr(config, name):
            setattr(config, name, os.path.abspath(getattr(config, name)))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    packing.retire_old_manifest(out, params)
    cache_root = Path(config.cache_dir) if config.cache_dir else _default_cache_dir()
    cache = PairCache(cache_root, config.cache_params())
    cache.clean_temporary()
    return out, cache_root, cache, report_mod.Report(params=params)


def build_shards(config: BuildConfig, client=None) -> dict:
    """Run every stage; returns the report (also written to ``<out>/report.json``)."""
    params = config.build_params()
    out, cache_root, cache, rep = _start(config, params)
    pairs = _exams_and_pairs(config, rep, cache_root)
    with _client_or(client, config) as c:
        tiling = {"size": int(config.size), "stride": config.effective_stride,
                  "max_background": float(config.max_background),
                  "max_border_xor": float(config.max_border_xor)}
        accepted = _register_stage(config, rep, c, cache, pairs, tiling)
        # Newly registered pairs come back tiled; only pairs from the cache are tiled here.
        tiled = [res.get("tiled") for _, res in accepted]
        todo = [i for i, t in enumerate(tiled) if t is None]
        with rep.stage("tile"):
            read_back = run_stage(c, "tile", packing.tile_entry,
                                  [accepted[i][1]["entry"] for i in todo],
                                  progress=config.progress, cache=cache, **tiling)
        for i, t in zip(todo, read_back):
            tiled[i] = t
        rep.task_seconds(read_back)
        rep.tiles(tiled)
        index = packing.build_index(
            [(pair.patient, t) for (pair, _), t in zip(accepted, tiled)], seed=config.seed)
        plans = packing.plan_shards(index, seed=config.seed, shard_size=config.shard_size)
        records = _pack_stage(config, rep, c, packing.write_shard_task, plans, cache=cache,
                              out=str(out), size=config.size, fmt=config.fmt)
    return _finish(config, rep, out, records, params, cache, "pair")


def build_downstream(config: BuildConfig, task: str, client=None) -> dict:
    """The labelled patch set of one downstream task (patch-level 8:1:1 split)."""
    params = {**config.build_params(), "task": task}
    for key in ("stride", "max_border_xor"):
        params.pop(key, None)
    out, cache_root, cache, rep = _start(config, params)
    pairs = _exams_and_pairs(config, rep, cache_root)
    with _client_or(client, config) as c:
        accepted = _register_stage(config, rep, c, cache, pairs)
        with rep.stage("patches"):
            found = run_stage(c, "patches", packing.labelled_entry,
                              [res["entry"] for _, res in accepted], progress=config.progress,
                              cache=cache, size=config.size, task=task,
                              max_background=config.max_background)
        rep.task_seconds(found)
        rep.labelled(found)
        index = packing.build_patch_index(found, seed=config.seed)
        plans = packing.plan_shards(index, seed=config.seed, shard_size=config.shard_size,
                                    order=packing.PATCH_ORDER)
        records = _pack_stage(config, rep, c, packing.write_patch_shard_task, plans, cache=cache,
                              out=str(out), size=config.size, task=task, fmt=config.fmt)
    return _finish(config, rep, out, records, params, cache, "patch")


def _default_cache_dir() -> Path:
    from ingest.adapters.synthetic import default_cache_dir

    return default_cache_dir()


@contextmanager
def _client_or(client, config: BuildConfig):
    if client is not None:
        yield client
        return
    with dask_client(config.workers, config.threads_per_worker, config.scheduler,
                     quiet=not config.progress) as c:
        yield c
