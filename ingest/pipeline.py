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
depend on the number of workers. The run's configuration is ``ingest.config.BuildConfig``; one
pair's register task is ``ingest.pair_task.prepare_pair``.
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ingest import packing, report as report_mod, splits
from ingest.adapters import load_exams
from ingest.cache import PairCache
from ingest.config import BuildConfig
from ingest.pair_task import check_quality, prepare_pair
from ingest.pairing import pair_exams


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
                    tiling=None) -> list:
    """Register (or reuse) every pair; returns the accepted ``(pair, result)`` in pair order."""
    with rep.stage("register"):
        prepared = run_stage(c, "register", prepare_pair, pairs, progress=config.progress,
                             cache=cache, params=config.pair_params(), tiling=tiling)
    accepted = []
    for pair, res in zip(pairs, prepared):
        rep.pair_prepared(res)
        if res.get("status") in ("registered", "cached"):
            ok, why = check_quality(res["quality"], config.quality_params())
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


def _pack_stage(config: BuildConfig, rep, c, task_func, plans, folder: Path, params: dict,
                **kwargs) -> tuple[list, set]:
    """Write the planned shards; returns their records and the files the old manifest named.

    The old manifest is retired here, once there is something to write: a build that stops
    before (bad input, every image rejected) leaves the previous set as it was.
    """
    if not plans:
        return [], set()
    previous = packing.manifest_files(folder)
    packing.retire_old_manifest(folder, params)
    with rep.stage("pack"):
        written = run_stage(c, "pack", task_func, plans, progress=config.progress, **kwargs)
    errors = [w for w in written if w.get("status") == "error"]
    if errors:
        raise RuntimeError(f"{len(errors)} shard(s) failed to write: {errors[0]['detail']}")
    rep.task_seconds(written)
    return [w["record"] for w in written], previous


def _finish(config: BuildConfig, rep, out: Path, records, previous: set, params: dict,
            cache: PairCache, kind: str) -> dict:
    if not records:
        # Nothing to write: no manifest (an empty set would verify as a valid one); the
        # report says why, and the previous set, if any, is left whole.
        rep.empty()
    else:
        with rep.stage("manifest"):
            packing.remove_stale_shards(out, {r["name"] for r in records}, previous)
            manifest = packing.write_build_manifest(out, records, params, cache.params_hash, kind)
            packing.forget_retired(out)
        rep.samples(manifest)
    rep.cache(str(cache.root), cache.params_hash)
    rep.write(out)
    return rep.data


def check_output(out: Path) -> None:
    """Create ``out`` and make sure this process can write there, before any work.

    A probe file is written under a temporary name and removed: permissions, a read-only mount
    or a full disk show here, not after the registrations.
    """
    from shards import publish

    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = publish.temporary_name(out / "write-probe")
        with open(probe, "wb") as fh:
            fh.write(b"probe")
        probe.unlink()
    except OSError as exc:
        raise PermissionError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def _start(config: BuildConfig, params: dict):
    from shards import publish

    # Absolute paths: tasks may run in workers started elsewhere (--scheduler, shared disk).
    for name in ("out", "root", "cache_dir", "manifest_csv"):
        if getattr(config, name):
            setattr(config, name, os.path.abspath(getattr(config, name)))
    out = Path(config.out)
    check_output(out)
    # Shards and reports of a killed writer (.train-000000.tar.tmp-<pid>-<id>, ...).
    publish.clean_stale(out)
    cache_root = Path(config.cache_dir) if config.cache_dir else _default_cache_dir()
    cache = PairCache(cache_root, asdict(config.pair_params()))
    cache.clean_temporary()
    return out, cache_root, cache, report_mod.Report(params=params)


def build_shards(config: BuildConfig, client=None) -> dict:
    """Run every stage; returns the report (also written to ``<out>/report.json``)."""
    params = asdict(config.pair_set_params())
    out, cache_root, cache, rep = _start(config, params)
    pairs = _exams_and_pairs(config, rep, cache_root)
    with _client_or(client, config) as c:
        tiling = config.tile_params()
        accepted = _register_stage(config, rep, c, cache, pairs, tiling)
        # Newly registered pairs come back tiled; only pairs from the cache are tiled here.
        tiled = [res.get("tiled") for _, res in accepted]
        todo = [i for i, t in enumerate(tiled) if t is None]
        with rep.stage("tile"):
            read_back = run_stage(c, "tile", packing.tile_entry,
                                  [accepted[i][1]["entry"] for i in todo],
                                  progress=config.progress, cache=cache, **asdict(tiling))
        for i, t in zip(todo, read_back):
            tiled[i] = t
        rep.task_seconds(read_back)
        rep.tiles(tiled)
        by_patient = [(pair.patient, t) for (pair, _), t in zip(accepted, tiled)]
        plan = splits.plan_splits(packing.patients_with_tiles(by_patient), config.seed,
                                 ratios=config.splits)
        rep.splits(plan, "patients")
        index = packing.build_index(by_patient, seed=config.seed, split_of=plan.of)
        plans = packing.plan_shards(index, seed=config.seed, shard_size=config.shard_size)
        records, previous = _pack_stage(config, rep, c, packing.write_shard_task, plans, out,
                                        params, cache=cache, out=str(out), size=config.size,
                                        fmt=config.fmt)
    return _finish(config, rep, out, records, previous, params, cache, "pair")


def build_downstream(config: BuildConfig, task: str, client=None) -> dict:
    """The labelled patch set of one downstream task (patch-level split, ``config.splits``)."""
    params = asdict(config.patch_set_params(task))
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
        plan = packing.patch_plan(found, config.seed, ratios=config.splits)
        rep.splits(plan, "patches")
        index = packing.build_patch_index(found, seed=config.seed, plan=plan)
        plans = packing.plan_shards(index, seed=config.seed, shard_size=config.shard_size,
                                    order=packing.PATCH_ORDER)
        records, previous = _pack_stage(config, rep, c, packing.write_patch_shard_task, plans,
                                        out, params, cache=cache, out=str(out),
                                        size=config.size, task=task, fmt=config.fmt)
    return _finish(config, rep, out, records, previous, params, cache, "patch")


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
