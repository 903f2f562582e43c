"""The PyTorch backend: webdataset tar streaming and the schema decoder in DataLoader workers,
augmentation batched in the main process on the training device.

Splitting by rank and by worker is explicit and exact (``epochs.py``): each rank plans its share
of the epoch; each worker gets a contiguous block of the rank's batches (the node/worker split that
webdataset's ``split_by_node``/``split_by_worker`` make at shard granularity, made here at sample
granularity so counts balance exactly). For a GPU, workers ship uint16 batches and the main
process converts them to float on the device and augments the whole batch at once; for CPU
training the workers augment (one torch thread each) into shared memory.
"""
from __future__ import annotations

import gc

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from loaders import modes
from loaders.epochs import plan_rank
from loaders.reading import plan_samples, shard_index
from loaders.sources import ShardSet


class PlannedBatches(IterableDataset):
    """Yields one uint16 batch dict per planned batch of this worker (``batch_size=None``)."""

    def __init__(self, shard_set: ShardSet, mode: str, *, batch_size: int, seed: int, epoch: int,
                 rank: int, world_size: int, worker_batches: list[list[int]],
                 shuffle_buffer: int, cache_dir: str | None, finish=None):
        super().__init__()
        self.shard_set, self.mode = shard_set, modes.check_mode(mode)
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self.rank, self.world_size = rank, world_size
        self.worker_batches = worker_batches
        self.shuffle_buffer, self.cache_dir = shuffle_buffer, cache_dir
        # CPU training: augment in the workers (one core each) instead of in the main process
        self.finish = finish

    def plan(self):
        units = modes.units_per_sample(self.mode)
        return plan_rank([c * units for c in self.shard_set.counts], seed=self.seed,
                         epoch=self.epoch, rank=self.rank, world_size=self.world_size,
                         batch_size=self.batch_size, shuffle_buffer=self.shuffle_buffer)

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        if info is not None:
            torch.set_num_threads(1)  # one core per worker: workers x threads = the cores
            # A forked worker shares the parent's heap; the cyclic GC would walk (and so
            # copy-on-write) every inherited object whenever it runs, which made a worker's
            # index parsing 100x slower: inherited objects are left out of collections.
            gc.freeze()
            _keep_freed_memory()
        units = modes.units_per_sample(self.mode)
        mine = self.worker_batches[worker] if worker < len(self.worker_batches) else []
        for j, items in plan_samples(self.plan(), mine, self.shard_set, units, self.cache_dir):
            raw = modes.decode_batch(self.mode, items, j)
            if self.finish is None:
                yield raw
            elif info is None:
                yield self.finish(raw)
            else:
                yield small_as_numpy(self.finish(raw, shared=True))


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


def batch_iterator(dataset: PlannedBatches, workers: int):
    """Raw (uint16) batches in the epoch's order: one from each worker in turn."""
    if workers == 0:
        return iter(dataset)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, prefetch_factor=4,
                        persistent_workers=False, collate_fn=_as_is,
                        multiprocessing_context=_context())
    return iter(loader)


def _keep_freed_memory():
    """Let glibc's malloc keep the worker's freed batch buffers for the next batch.

    Every batch allocates and frees the same few megabytes; by default glibc returns such
    blocks to the kernel, so each batch page-faulted (and the kernel zeroed) them afresh: a
    third of a worker's system time at 96 px (a tenth of its CPU time). A fixed mmap threshold above a batch and a high
    trim threshold keep them in the heap. No-op where there is no glibc.
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
