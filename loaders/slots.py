"""Reusable shared-memory output slots between DataLoader workers and the main process.

By default a DataLoader worker puts every batch tensor into fresh shared memory: the kernel
allocates and zeroes it, both processes page-fault it in, and the main process fetches its file
descriptor over a socket. At 96 px that is about 0.07 ms per pair, a third of the torch backend's
work on raw shards. Here each worker keeps a few slots of shared memory and writes each batch into
a free one; the main process maps a slot once and hands the batch out as tensors over the slot.
The slot comes back to the worker when the last of those tensors (views included) is freed, so a
batch stays valid for as long as the caller keeps it, as with fresh memory. When every slot is
still held (a caller keeping many batches), the worker falls back to fresh shared memory.

Bookkeeping, per worker ``w`` and slot ``s``, in shared counters each written by one side only:

* ``handed[w, s]``: batches the worker wrote into the slot;
* ``returned[w, s]``: those the main process gave back (freed by the caller, or dropped unseen);
* ``known[w, s]``: the slot's memory as last sent and mapped by the main process (a generation
  number); until it matches, the worker sends the memory along with the batch.

A slot is free when ``handed == returned``. The DataLoader drops prefetched batches unseen when an
epoch is abandoned midway; the main process finds them by the gap in a worker's batch sequence
numbers and gives their slots back (the worker records each sequence number's slot in a ring).
"""
from __future__ import annotations

import math
import threading
import weakref

import numpy as np
import torch

ALIGN = 64            # byte alignment of each array in a slot
RING = 4096           # sequence numbers remembered per worker (gaps are at most a few batches)
TICKET = "__slot__"   # the key a worker's batch carries its slot ticket under


class SlotPool:
    """Output slots of ``workers`` DataLoader workers, ``per_worker`` each.

    Built in the main process before the workers start; a worker uses ``lease`` and ``ship``, the
    main process ``receive``. Only the shared counters travel to the workers.
    """

    def __init__(self, workers: int, per_worker: int):
        n = max(1, workers)
        self.per_worker = per_worker
        self.handed = torch.zeros((n, per_worker), dtype=torch.int64).share_memory_()
        self.returned = torch.zeros((n, per_worker), dtype=torch.int64).share_memory_()
        self.known = torch.zeros((n, per_worker), dtype=torch.int64).share_memory_()
        self.slot_of = torch.full((n, RING), -1, dtype=torch.int64).share_memory_()
        self.fallbacks = torch.zeros(n, dtype=torch.int64).share_memory_()
        self._reset_local()

    def _reset_local(self):
        # worker side: slot -> (generation, uint8 tensor over its shared memory); next sequence
        self._memory: dict[int, tuple[int, torch.Tensor]] = {}
        self._seq = 0
        # main side: (worker, slot) -> (generation, uint8 tensor), next expected sequence
        self._mapped: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}
        self._expect: dict[int, int] = {}
        self._lock = threading.RLock()   # a finalizer may run inside _give_back (GC)

    def __getstate__(self):
        # per-process state stays behind (a spawned worker starts without it)
        state = dict(self.__dict__)
        for name in ("_memory", "_seq", "_mapped", "_expect", "_lock"):
            state.pop(name)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset_local()

    # --- worker side ------------------------------------------------------------------------

    def lease(self, worker: int) -> "Lease":
        """The output lease of one batch; it takes a slot at its first ``alloc``."""
        return Lease(self, worker)

    def _acquire(self, worker: int, nbytes: int):
        """``(slot, generation, memory)`` of a free slot of at least ``nbytes`` (grown when
        smaller), or ``(-1, 0, None)`` when every slot is still held."""
        handed, returned = self.handed.numpy()[worker], self.returned.numpy()[worker]
        for s in range(self.per_worker):
            if handed[s] != returned[s]:
                continue
            generation, memory = self._memory.get(s, (0, None))
            if memory is None or memory.numel() < nbytes:
                generation += 1
                memory = _shared_bytes(nbytes)
                self._memory[s] = (generation, memory)
            handed[s] += 1
            return s, generation, memory
        self.fallbacks[worker] += 1
        return -1, 0, None

    def _next_seq(self, worker: int, slot: int) -> int:
        seq = self._seq
        self._seq += 1
        self.slot_of.numpy()[worker, seq % RING] = slot
        return seq

    # --- main side --------------------------------------------------------------------------

    def receive(self, batch: dict) -> dict:
        """Replace the slot ticket's descriptors in a worker's batch by tensors over the slot."""
        ticket = batch.pop(TICKET, None)
        if ticket is None:
            return batch
        worker, slot, seq, generation, memory, fields = ticket
        self._drop_gap(worker, seq)
        if slot < 0:
            return batch
        mapped = self._mapped.get((worker, slot))
        if memory is not None and (mapped is None or mapped[0] != generation):
            mapped = (generation, memory)
            self._mapped[(worker, slot)] = mapped
            self.known.numpy()[worker, slot] = generation
        # One new tensor per batch over the slot's bytes: every field is a view of it, so its
        # storage dies (and the slot is given back) only when the caller drops the last view.
        holder = mapped[1].numpy()[:]
        weakref.finalize(holder, self._give_back, worker, slot)
        base = torch.from_numpy(holder)
        for name, (dtype, shape, stride, offset, as_numpy) in fields.items():
            value = _view(base, dtype, shape, stride, offset)
            batch[name] = value.numpy() if as_numpy else value
        return batch

    def _give_back(self, worker: int, slot: int) -> None:
        with self._lock:
            self.returned.numpy()[worker, slot] += 1

    def _drop_gap(self, worker: int, seq: int) -> None:
        """Give back the slots of this worker's batches the DataLoader dropped unseen."""
        expected = self._expect.get(worker, 0)
        if seq - expected < RING:
            ring = self.slot_of.numpy()[worker]
            for missed in range(expected, seq):
                if ring[missed % RING] >= 0:
                    self._give_back(worker, int(ring[missed % RING]))
        self._expect[worker] = seq + 1


class Lease:
    """One batch's output on the worker side: ``alloc`` carves arrays out of a slot (taken at
    the first call), ``ship`` turns the finished batch into what crosses to the main process."""

    def __init__(self, pool: SlotPool, worker: int):
        self.pool, self.worker = pool, worker
        self.slot, self.generation, self.memory = None, 0, None
        self._used = 0
        self._shipped = False

    def alloc(self, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised tensor in this batch's slot; in fresh shared memory when no slot is
        free or the slot is full (the DataLoader then sends it the usual way)."""
        nbytes = math.prod(shape) * dtype.itemsize
        if self.slot is None:
            self.slot, self.generation, self.memory = self.pool._acquire(self.worker, nbytes)
        start = -(-self._used // ALIGN) * ALIGN
        if self.memory is None or start + nbytes > self.memory.numel():
            return _shared_bytes(nbytes).view(dtype).view(shape)
        self._used = start + nbytes
        return self.memory[start:start + nbytes].view(dtype).view(shape)

    def ship(self, batch: dict) -> dict:
        """The batch with its slot arrays replaced by descriptors and the ticket attached."""
        fields = {}
        if self.memory is not None:
            base = self.memory.data_ptr()
            for name, value in batch.items():
                described = _describe(value, base, self.memory.numel())
                if described is not None:
                    fields[name] = described
            for name in fields:
                batch[name] = None
        if self.slot is None:
            self.slot = -1
        memory = None
        if self.memory is not None and \
                self.pool.known.numpy()[self.worker, self.slot] != self.generation:
            memory = self.memory   # first use since (re)allocation: the main process maps it
        seq = self.pool._next_seq(self.worker, self.slot)
        batch[TICKET] = (self.worker, self.slot, seq, self.generation, memory, fields)
        self._shipped = True
        return batch

    def cancel(self) -> None:
        """The batch failed before it was shipped: the slot is free again."""
        if not self._shipped and self.slot is not None and self.slot >= 0:
            self.pool.handed.numpy()[self.worker, self.slot] -= 1
            self._shipped = True


def _shared_bytes(nbytes: int) -> torch.Tensor:
    """A uint8 CPU tensor over fresh shared memory (the DataLoader sends it as a descriptor)."""
    storage = torch.UntypedStorage._new_shared(max(1, int(nbytes)))
    return torch.empty(0, dtype=torch.uint8).set_(storage)


def _describe(value, base: int, nbytes: int):
    """``(dtype, shape, stride, offset in bytes, as_numpy)`` of a tensor or numpy array that
    lies in the slot starting at address ``base``, else None."""
    as_numpy = isinstance(value, np.ndarray)
    if as_numpy:
        address = value.__array_interface__["data"][0]
    elif isinstance(value, torch.Tensor) and value.device.type == "cpu":
        address = value.data_ptr()
    else:
        return None
    offset = address - base
    if not 0 <= offset < nbytes:
        return None
    if as_numpy:   # only arrays carved out of the slot (plain numeric ones) get here
        value = torch.from_numpy(value)
    return value.dtype, tuple(value.shape), value.stride(), offset, as_numpy


def _view(base: torch.Tensor, dtype, shape, stride, offset) -> torch.Tensor:
    size = dtype.itemsize
    span = 1 + sum((n - 1) * st for n, st in zip(shape, stride)) if all(shape) else 0
    flat = base[offset:offset + max(span, 1) * size].view(dtype)
    return flat.as_strided(shape, stride)
