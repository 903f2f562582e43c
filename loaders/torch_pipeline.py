"""The PyTorch backend: shard reading and the schema's batch decoder in DataLoader workers,
augmentation batched in the main process on the training device.

Splitting by rank and by worker is explicit and exact (``epochs.py``): each rank plans its share
of the epoch; each worker gets a contiguous block of the rank's batches (the node/worker split that
webdataset's ``split_by_node``/``split_by_worker`` make at shard granularity, made here at sample
granularity so counts balance exactly). For a GPU, workers ship uint16 batches and the main
process converts them to float on the device and augments the whole batch at once; for CPU
training the workers augment (one torch thread each) into shared memory that is reused from batch
to batch (``slots.py``).
"""
from __future__ import annotations

import functools
import gc

import cv2
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from loaders import modes
from loaders.epochs import plan_rank, resume_blocks
from loaders.reading import ReadChecks, plan_samples, shard_index, take_problems
from loaders.slots import SlotPool
from shards import openers
from shards.shardset import ShardSet

PREFETCH = 4   # batches each DataLoader worker prepares ahead


class PlannedBatches(IterableDataset):
    """Yields one uint16 batch dict per planned batch of this worker (``batch_size=None``).

    The epoch and resume point are not fixed at construction: ``start(epoch, done)`` writes them
    into a small shared-memory tensor that every iteration reads first, so the DataLoader's
    workers persist across epochs (forking a worker pool cost ~180 ms an epoch) and still learn
    where each epoch begins.
    """

    def __init__(self, shard_set: ShardSet, mode: str, *, batch_size: int, seed: int,
                 rank: int, world_size: int, n_batches: int, workers: int,
                 shuffle_buffer: int, cache_dir: str | None, finish=None,
                 checks: ReadChecks = ReadChecks(), size: int | None = None):
        super().__init__()
        self.shard_set, self.mode = shard_set, modes.check_mode(mode)
        self.batch_size, self.seed = batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.n_batches, self.workers = n_batches, workers
        self.shuffle_buffer, self.cache_dir = shuffle_buffer, cache_dir
        self.checks, self.size = checks, size
        # CPU training: augment in the workers (one core each) instead of in the main process;
        # ``finish(raw, epoch=..., alloc=...)``
        self.finish = finish
        # (epoch, batches done): shared with forked workers, read at each iteration's start
        self.position = torch.zeros(2, dtype=torch.int64).share_memory_()
        # reused output memory: a slot per batch a worker may have in flight or held by the
        # caller (the DataLoader's prefetch plus the batch in use and the one before it)
        self.slots = SlotPool(workers, PREFETCH + 2)
        self._worker_ready = False

    def start(self, epoch: int, done: int) -> None:
        """Set the epoch and resume point the next iteration (in any worker) runs from."""
        self.position[0], self.position[1] = int(epoch), int(done)

    def plan(self, epoch: int):
        units = modes.units_per_sample(self.mode)
        return plan_rank([c * units for c in self.shard_set.counts], seed=self.seed,
                         epoch=epoch, rank=self.rank, world_size=self.world_size,
                         batch_size=self.batch_size, shuffle_buffer=self.shuffle_buffer)

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None and not self._worker_ready:
            self._worker_ready = True   # once per worker process, not once per epoch
            torch.set_num_threads(1)  # one core per worker: workers x threads = the cores
            cv2.setNumThreads(1)
            # A forked worker shares the parent's heap; the cyclic GC would walk (and so
            # copy-on-write) every inherited object whenever it runs, which made a worker's
            # index parsing 100x slower: inherited objects are left out of collections.
            gc.freeze()
            _keep_freed_memory()
        epoch, done = (int(v) for v in self.position.tolist())
        blocks = resume_blocks(self.n_batches, self.workers, done)
        units = modes.units_per_sample(self.mode)
        mine = blocks[worker] if worker < len(blocks) else []
        decode = functools.partial(modes.decode_batch, self.mode, size=self.size,
                                   on_error=self.checks.on_error)
        for j, items in plan_samples(self.plan(epoch), mine, self.shard_set, units,
                                     self.cache_dir, self.checks):
            if info is None:
                raw = decode(items, j)
                report = read_report(raw)
                out = raw if self.finish is None else self.finish(raw, epoch=epoch)
                yield dict(out, **{READ_REPORT: report})
                continue
            lease = self.slots.lease(worker)
            try:
                if self.finish is None:   # uint16 pixels for the device, straight into the slot
                    out = decode(items, j, alloc=lease.alloc)
                    report = read_report(out)
                else:
                    raw = decode(items, j)
                    report = read_report(raw)
                    out = small_as_numpy(self.finish(raw, epoch=epoch, alloc=lease.alloc))
            except BaseException:
                lease.cancel()
                raise
            out[READ_REPORT] = report
            yield lease.ship(out)

    def receive(self, batch: dict) -> dict:
        """A batch as the main process got it from a worker -> the batch the caller sees."""
        batch = self.slots.receive(batch)
        return batch if self.finish is None else small_as_tensors(batch)


READ_REPORT = "_read_report"   # what a batch's reading met; the loader takes it out


def read_report(batch: dict) -> dict:
    """Take a batch's skipped samples out of it and add the retries and shard problems this
    process met since its last batch."""
    return {"skipped": batch.pop(modes.SKIPPED, []), "retries": openers.take_retry_events(),
            "problems": take_problems()}


# Per-sample columns a worker ships as numpy: every tensor in a worker's output gets its own
# shared-memory segment, and the main process opens a socket to the worker for each one's file
# descriptor; these few bytes travel pickled instead (``small_as_tensors`` restores them).
SMALL_COLUMNS = ("is_pad", "area", "label")


def small_as_numpy(batch: dict) -> dict:
    for name in SMALL_COLUMNS:
        if name in batch:
            batch[name] = batch[name].numpy()
    return batch


def small_as_tensors(batch: dict) -> dict:
    for name in SMALL_COLUMNS:
        if name in batch:
            batch[name] = torch.from_numpy(batch[name])
    return batch


def preload_indexes(shard_set: ShardSet, cache_dir: str | None) -> None:
    """Parse every shard's index in this process before workers fork: they inherit the parsed
    indexes instead of each re-reading them every epoch."""
    for shard in shard_set.shards:
        if shard.index_url is not None:
            shard_index(shard.index_url, cache_dir, shard_set.endpoint)


def batch_loader(dataset: PlannedBatches, workers: int) -> DataLoader:
    """A DataLoader whose workers persist across epochs: every ``iter()`` of it runs the epoch
    and resume point last given to ``dataset.start`` (one batch from each worker in turn)."""
    return DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=PREFETCH,
                      persistent_workers=True, collate_fn=_as_is,
                      multiprocessing_context=_context())


def start_iteration(loader: DataLoader):
    """``iter(loader)``, which forks the workers the first time, with OpenCV's thread pool
    stopped meanwhile: its threads do not survive a fork, and a forked worker that then touches
    the inherited pool (OpenCV in the worker, even to set its thread count) waits forever. The
    pool runs whenever this process used OpenCV on a large enough image (the caller's own code
    included); its thread count is restored at once (the threads restart on demand)."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return iter(loader)
    finally:
        cv2.setNumThreads(threads)


def close_loader(loader: DataLoader | None) -> None:
    """Stop and join a persistent loader's workers now (not whenever it is collected)."""
    iterator = getattr(loader, "_iterator", None) if loader is not None else None
    if iterator is not None:
        iterator._shutdown_workers()
        loader._iterator = None


def loader_pids(loader: DataLoader | None) -> list[int]:
    """Process ids of a persistent loader's live workers."""
    return [w.pid for w in _worker_processes(loader) if w.pid is not None and w.is_alive()]


def workers_lost(loader: DataLoader | None) -> bool:
    """Whether a started persistent loader has lost a worker (its next epoch could not run)."""
    return any(not w.is_alive() for w in _worker_processes(loader))


def _worker_processes(loader: DataLoader | None) -> list:
    # the DataLoader keeps its worker processes on its (persistent) iterator
    iterator = getattr(loader, "_iterator", None) if loader is not None else None
    return list(getattr(iterator, "_workers", None) or [])


def _keep_freed_memory():
    """Let glibc's malloc keep the worker's freed batch buffers for the next batch.

    Every batch allocates and frees the same few megabytes; by default glibc returns such
    blocks to the kernel, so each batch page-faulted (and the kernel zeroed) them afresh: a
    third of a worker's system time at 96 px (a tenth of its CPU time). A fixed mmap
    threshold above a batch and a high trim threshold keep them in the heap. No-op where there
    is no glibc.
    """
    import ctypes

    try:
        libc = ctypes.CDLL(None)   # the symbols already loaded: glibc's, where there is glibc
        if hasattr(libc, "mallopt"):
            libc.mallopt(-3, 256 << 20)   # M_MMAP_THRESHOLD
            libc.mallopt(-1, 512 << 20)   # M_TRIM_THRESHOLD
    except OSError:
        pass


def _as_is(batch):
    # keep numpy: torch cannot pickle uint16 tensors between processes
    return batch


def _context():
    import multiprocessing as mp

    # fork is fastest where safe; forkserver elsewhere (macOS)
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
