"""``make_loader``: the one entry point the training code uses, whatever the backend."""
from __future__ import annotations

import functools
import logging
import os

import torch

from loaders import modes
from loaders.augment import resolve_views
from loaders.epochs import EpochState, batches_per_rank
from shards.shardset import open_shard_set

BACKENDS = ("torch", "dali")
STATS_KEPT = 100   # items of each list an epoch's statistics keep (the counts are complete)
log = logging.getLogger("loaders")


class Loader:
    """An iterable of batch dicts over one epoch at a time, with resumable state.

    Iterating runs the current epoch from its resume point; when the epoch ends, the loader moves
    on to the next one (``set_epoch`` chooses one explicitly). ``state_dict()`` taken after ``k``
    batches and given to ``load_state_dict`` of a fresh loader makes it continue with batch
    ``k + 1`` of the same sequence.
    """

    def __init__(self, source, *, mode="pairs", backend="torch", batch_size=64, augment=None,
                 rank=0, world_size=1, workers=2, seed=0, epoch=0, device=None, split="train",
                 shuffle_buffer=1000, cache_dir=None, endpoint=None, dali_threads=None,
                 on_error="raise", verify=None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if batch_size < 1 or workers < 0:
            raise ValueError("batch_size must be positive and workers non-negative")
        self.mode = modes.check_mode(mode)
        from loaders.reading import ReadChecks

        self.checks = ReadChecks(on_error=on_error, verify=verify)
        if backend == "dali" and self.checks != ReadChecks():
            raise ValueError("the DALI backend reads shards itself: on_error='skip' and "
                             "verify='sha256' need backend='torch' (check a set with "
                             "`shards verify` before a DALI run)")
        if backend == "dali" and self.mode == "ssl" and batch_size % 2:
            raise ValueError("the DALI backend reads ssl batches as pairs: use an even batch_size")
        self.backend = backend
        self.shard_set = open_shard_set(source, split, endpoint=endpoint)
        modes.check_set(self.shard_set, self.mode)
        check_cache(backend, self.shard_set, cache_dir)
        # one AugmentSpec, or in ssl mode ViewSpecs (one per view), sizes decided
        self.augment = resolve_views(augment, 2 if self.mode == "ssl" else 1,
                                     self.shard_set.patch_size, mode=f"mode {self.mode!r}")
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.workers, self.seed, self.device = workers, seed, device
        self.shuffle_buffer = shuffle_buffer
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else None
        self.dali_threads = dali_threads or max(1, workers)
        self._state = EpochState(seed=seed, epoch=epoch, world_size=world_size, rank=rank,
                                 workers=workers, batch_size=batch_size)
        # per epoch: what reading met (skipped samples, retries, shard problems)
        self.stats: dict[int, dict] = {}

    # --- epochs and state -------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._state.epoch

    def set_epoch(self, epoch: int) -> None:
        self._state.epoch, self._state.batches_done = int(epoch), 0

    def __len__(self) -> int:
        """Batches per epoch, the same on every rank."""
        units = modes.units_per_sample(self.mode) if self.backend == "torch" else 1
        per_batch = self.batch_size // 2 if (self.backend == "dali" and self.mode == "ssl") \
            else self.batch_size
        return batches_per_rank(self.shard_set.samples * units, self.world_size, per_batch)

    def state_dict(self) -> dict:
        return {**self._state.to_dict(), "backend": self.backend, "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        restored = EpochState.from_dict(state)
        for name in ("seed", "world_size", "rank", "batch_size"):
            if getattr(restored, name) != getattr(self._state, name):
                raise ValueError(f"cannot resume: state has {name}={getattr(restored, name)}, "
                                 f"this loader {getattr(self._state, name)}")
        if state.get("backend", self.backend) != self.backend or \
                state.get("mode", self.mode) != self.mode:
            raise ValueError("cannot resume: the state comes from another backend or mode")
        if (restored.batches_done and max(1, restored.workers) != max(1, self.workers)
                and self.backend == "torch"):
            raise ValueError(f"cannot resume mid-epoch with {self.workers} workers: the epoch "
                             f"was started with {restored.workers} (the batch order depends on it)")
        self._state = restored
        self._state.workers = self.workers

    # --- iteration --------------------------------------------------------------------------

    def __iter__(self):
        state = self._state
        if state.batches_done >= len(self):
            self.set_epoch(state.epoch + 1)
        epoch, done = state.epoch, state.batches_done
        for batch in self._batches(epoch, done):
            state.batches_done += 1
            yield batch
        if state.epoch == epoch and state.batches_done >= len(self):
            self.set_epoch(epoch + 1)

    def _batches(self, epoch: int, done: int):
        if self.backend == "torch":
            return self._torch_batches(epoch, done)
        from loaders.dali_pipeline import dali_batches

        return dali_batches(self.shard_set, self.mode, spec=self.augment,
                            batch_size=self.batch_size, seed=self.seed, rank=self.rank,
                            world_size=self.world_size, n_batches=len(self),
                            shuffle_buffer=self.shuffle_buffer, threads=self.dali_threads,
                            epoch=epoch, done=done, device=self.device, cache_dir=self.cache_dir)

    def _torch_batches(self, epoch: int, done: int):
        from loaders.torch_pipeline import READ_REPORT, start_iteration

        on_cpu = self.device is None or torch.device(self.device).type == "cpu"
        dataset, loader = self._torch_loader(on_cpu)
        dataset.start(epoch, done)
        finish = functools.partial(modes.finish, self.mode, spec=self.augment, seed=self.seed,
                                   epoch=epoch, rank=self.rank)
        try:
            for batch in start_iteration(loader) if loader is not None else dataset:
                if loader is not None:
                    batch = dataset.receive(batch)
                self._count(epoch, batch.pop(READ_REPORT, None))
                if dataset.finish is None:   # uint16 batch: to the device, augment there
                    yield finish(batch, device=self.device)
                else:
                    yield batch
        except GeneratorExit:
            raise
        except BaseException:
            # a worker died or failed mid-batch: the next iteration starts fresh workers (a
            # persistent DataLoader with a dead worker would fail at every later iteration)
            # and resumes after the last batch handed out
            self.close()
            raise

    def epoch_stats(self, epoch: int | None = None) -> dict:
        """What reading epoch ``epoch`` (default: the current one) met so far:
        ``samples_skipped``, ``retries``, and the first ``STATS_KEPT`` of each ``skipped``
        (key, shard, reason), ``retry_events`` (url, attempt, cause) and ``problems``."""
        epoch = self.epoch if epoch is None else int(epoch)
        return self.stats.setdefault(epoch, {"samples_skipped": 0, "retries": 0, "skipped": [],
                                             "retry_events": [], "problems": []})

    def _count(self, epoch: int, report: dict | None) -> None:
        from shards.openers import take_retry_events

        if not report:
            return
        # this process's own retries too (the manifest, indexes read before the workers fork)
        report = dict(report, retries=report["retries"] + take_retry_events())
        stats = self.epoch_stats(epoch)
        stats["samples_skipped"] += len(report["skipped"])
        stats["retries"] += len(report["retries"])
        for name, new in (("skipped", report["skipped"]), ("retry_events", report["retries"]),
                          ("problems", report["problems"])):
            stats[name].extend(new[:max(0, STATS_KEPT - len(stats[name]))])
        for item in report["skipped"]:
            log.warning("skipped %s in %s: %s", item["key"], item["shard"], item["reason"])

    def _torch_loader(self, on_cpu: bool):
        """The dataset and DataLoader, built once and kept (workers persist across epochs);
        rebuilt when what the workers were forked with changes (augmentation, device) or when
        one of them has died (killed, out of memory)."""
        from loaders.torch_pipeline import (PlannedBatches, batch_loader, preload_indexes,
                                            workers_lost)

        key = (self.augment, on_cpu, self.workers, len(self))
        cached = getattr(self, "_torch_cache", None)
        if cached is not None and cached[0] == key and not workers_lost(cached[2]):
            return cached[1], cached[2]
        self.close()
        in_workers = on_cpu and self.workers > 0
        finish = functools.partial(modes.finish, self.mode, spec=self.augment, seed=self.seed,
                                   rank=self.rank)
        dataset = PlannedBatches(self.shard_set, self.mode, batch_size=self.batch_size,
                                 seed=self.seed, rank=self.rank, world_size=self.world_size,
                                 n_batches=len(self), workers=self.workers,
                                 shuffle_buffer=self.shuffle_buffer, cache_dir=self.cache_dir,
                                 finish=finish if in_workers else None, checks=self.checks,
                                 size=self.shard_set.patch_size())
        loader = None
        if self.workers > 0:
            preload_indexes(self.shard_set, self.cache_dir)
            loader = batch_loader(dataset, self.workers)
        self._torch_cache = (key, dataset, loader)
        return dataset, loader

    def worker_pids(self) -> list[int]:
        """Process ids of the torch backend's running DataLoader workers (none for DALI, for
        ``workers=0``, or before the first batch is asked for)."""
        from loaders.torch_pipeline import loader_pids

        cached = getattr(self, "_torch_cache", None)
        return loader_pids(cached[2]) if cached is not None else []

    def __getstate__(self):
        # worker processes and their DataLoader stay with the process that started them
        return {**self.__dict__, "_torch_cache": None}

    def close(self) -> None:
        """Stop the torch backend's worker processes now (they otherwise live as long as the
        loader, to be reused by the next epoch)."""
        from loaders.torch_pipeline import close_loader

        cached = getattr(self, "_torch_cache", None)
        self._torch_cache = None
        if cached is not None:
            close_loader(cached[2])


def check_cache(backend: str, shard_set, cache_dir) -> None:
    """DALI reads only local files: a remote set needs a cache directory (said up front, not
    after the other work of a run)."""
    if backend == "dali" and cache_dir is None and not shard_set.is_local:
        raise ValueError(f"{shard_set.root}: the DALI backend reads remote shards from a local "
                         "copy: give a cache directory (make_loader(cache_dir=...), "
                         "loaders bench --cache-dir DIR)")


def make_loader(source, mode="pairs", backend="torch", batch_size=64, augment=None, rank=0,
                world_size=1, workers=2, seed=0, epoch=0, device=None, **options) -> Loader:
    """A loader over a shard set (root path or URL holding ``manifest.json``).

    ``augment``: an ``AugmentSpec``; default ``AugmentSpec()``, and a spec without a ``size``
    crops to the shard set's patch size. In ``ssl`` mode also a pair ``(spec1, spec2)``
    (``ViewSpecs``): ``view1`` drawn from ``spec1``, ``view2`` from ``spec2`` (same output size).
    Options: ``split`` ("train"), ``shuffle_buffer`` (1000
    samples), ``cache_dir`` (local copies of remote shards), ``endpoint`` (S3 endpoint URL),
    ``dali_threads``, ``on_error`` ("raise" or "skip": leave unreadable samples out, count
    them in ``loader.stats``), ``verify`` (None or "sha256": check each shard against the
    manifest as it is read). Both checks are the torch backend's.
    """
    return Loader(source, mode=mode, backend=backend, batch_size=batch_size, augment=augment,
                  rank=rank, world_size=world_size, workers=workers, seed=seed, epoch=epoch,
                  device=device, **options)
