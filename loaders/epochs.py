"""Exactly-once epochs: which sample every rank and worker reads, in which order, and resume state.

The manifest gives exact per-shard sample counts, so an epoch is planned from numbers alone:

1. the shards are permuted by ``(seed, epoch)``; concatenated in that order they form the epoch's
   global sequence of ``N`` samples, each a ``(shard, offset)`` position;
2. rank ``r`` of ``R`` takes the contiguous range ``[floor(r*N/R), floor((r+1)*N/R))`` (the same
   split DALI's readers make with ``shard_id``/``num_shards``), so a rank opens about ``1/R`` of
   the shards;
3. within a rank, samples are shuffled with a bounded window (a jittered sort: no sample moves more
   than ``shuffle_buffer`` places), so a reader streams each shard once and keeps at most about
   ``shuffle_buffer`` samples in memory;
4. every rank is padded to the same number of full batches, ``ceil(ceil(N/R)/B)``, by repeating
   its own last samples; padded slots are flagged ``is_pad`` so a loss can mask them. No sample is
   dropped, and every rank runs the same number of steps (what DDP needs);
5. the rank's batches are split into contiguous blocks, one per worker; the DataLoader takes one
   batch from each worker in turn, which fixes the order for a given worker count.

Everything is a pure function of ``(shard counts, seed, epoch, R, W, B, shuffle_buffer)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class RankPlan:
    """One rank's epoch: ``positions[j*B:(j+1)*B]`` are batch ``j`` as global positions."""

    shard_order: np.ndarray      # permutation of shard indices for this epoch
    shard_starts: np.ndarray     # global position where each shard (in ``shard_order``) begins
    positions: np.ndarray        # int64 [batches * B], global positions, pads included
    is_pad: np.ndarray           # bool  [batches * B]
    batch_size: int
    real_samples: int            # samples of this rank before padding

    @property
    def batches(self) -> int:
        return len(self.positions) // self.batch_size

    def locate(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global positions -> (shard index in the manifest list, offset inside that shard)."""
        slot = np.searchsorted(self.shard_starts, positions, side="right") - 1
        return self.shard_order[slot], positions - self.shard_starts[slot]

    def batch(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        s = slice(j * self.batch_size, (j + 1) * self.batch_size)
        return self.positions[s], self.is_pad[s]


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


def shard_order(n_shards: int, seed: int, epoch: int) -> np.ndarray:
    """The epoch's shard permutation, from ``(seed, epoch)`` only."""
    return _rng(seed, epoch, 0x5A4D).permutation(n_shards)


def rank_range(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Contiguous share of rank ``rank``: the floor split DALI's readers also use."""
    return (rank * total) // world_size, ((rank + 1) * total) // world_size


def batches_per_rank(total: int, world_size: int, batch_size: int) -> int:
    return math.ceil(math.ceil(total / world_size) / batch_size) if total else 0


def window_shuffle(n: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)`` in which no element moves more than ``window`` places."""
    if window <= 1 or n <= 1:
        return np.arange(n)
    keys = np.arange(n) + rng.uniform(0.0, float(window), size=n)
    return np.argsort(keys, kind="stable")


def plan_rank(counts, *, seed: int, epoch: int, rank: int, world_size: int, batch_size: int,
              shuffle_buffer: int = 1000) -> RankPlan:
    """Plan rank ``rank``'s epoch over shards holding ``counts[i]`` samples each."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    counts = np.asarray(counts, dtype=np.int64)
    order = shard_order(len(counts), seed, epoch)
    starts = np.concatenate([[0], np.cumsum(counts[order])[:-1]]).astype(np.int64)
    total = int(counts.sum())
    begin, end = rank_range(total, rank, world_size)
    real = np.arange(begin, end, dtype=np.int64)
    real = real[window_shuffle(len(real), shuffle_buffer, _rng(seed, epoch, rank, 0xB0F))]
    n_slots = batches_per_rank(total, world_size, batch_size) * batch_size
    n_pad = n_slots - len(real)
    if n_pad and len(real):
        # repeat this rank's last samples: they are still in the reader's window
        pads = real[::-1][np.arange(n_pad) % len(real)]
    elif n_pad:  # fewer samples than ranks: borrow from the global sequence
        pads = np.arange(n_pad, dtype=np.int64) % max(total, 1)
    else:
        pads = np.empty(0, dtype=np.int64)
    positions = np.concatenate([real, pads]).astype(np.int64)
    is_pad = np.zeros(n_slots, dtype=bool)
    is_pad[len(real):] = True
    return RankPlan(order, starts, positions, is_pad, batch_size, len(real))


def worker_blocks(n_batches: int, workers: int) -> list[range]:
    """Contiguous blocks of batch indices, one per worker (``workers`` 0 means one, in-process)."""
    w = max(1, workers)
    return [range((i * n_batches) // w, ((i + 1) * n_batches) // w) for i in range(w)]


def round_robin(blocks: list) -> list:
    """The order a DataLoader yields worker outputs: one from each worker in turn, skipping
    workers that are done."""
    out, i = [], 0
    longest = max((len(b) for b in blocks), default=0)
    for i in range(longest):
        for b in blocks:
            if i < len(b):
                out.append(b[i])
    return out


def resume_blocks(n_batches: int, workers: int, done: int) -> list[list[int]]:
    """Per-worker batch lists that continue the round-robin sequence after ``done`` batches.

    The DataLoader always starts its turn at worker 0, so the blocks are rotated to put the worker
    whose turn came next first; the remaining sequence is then exactly the uninterrupted one.
    """
    blocks = [list(b) for b in worker_blocks(n_batches, workers)]
    sequence = round_robin(blocks)
    if not 0 <= done <= len(sequence):
        raise ValueError(f"resume point {done} is outside the epoch's {len(sequence)} batches")
    consumed = set(sequence[:done])
    remaining = [[j for j in b if j not in consumed] for b in blocks]
    if done == 0 or done == len(sequence):
        return remaining
    nxt = sequence[done]
    first = next(i for i, b in enumerate(remaining) if b and b[0] == nxt)
    rotated = remaining[first:] + remaining[:first]
    assert round_robin(rotated) == sequence[done:]
    return rotated


@dataclass
class EpochState:
    """What a checkpoint stores to resume an epoch at the next unseen batch of each rank."""

    seed: int = 0
    epoch: int = 0
    world_size: int = 1
    rank: int = 0
    workers: int = 0
    batch_size: int = 1
    batches_done: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "world_size": self.world_size,
                "rank": self.rank, "workers": self.workers, "batch_size": self.batch_size,
                "batches_done": self.batches_done, **({"extra": self.extra} if self.extra else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "EpochState":
        return cls(**{k: d[k] for k in ("seed", "epoch", "world_size", "rank", "workers",
                                         "batch_size", "batches_done") if k in d},
                   extra=dict(d.get("extra", {})))
