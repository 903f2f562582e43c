"""Streaming exactly the planned samples out of tar shards, in the plan's order.

A worker is given batch indices; ``plan_samples`` works out which ``(shard, offset)`` samples they
need, streams each shard once in order with webdataset's tar iterators (stopping after the last
needed sample), and hands samples out in the plan's (window-shuffled) order, holding at most about
a shuffle window of them.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np
from webdataset.tariterators import group_by_keys, tar_file_expander

from loaders.epochs import RankPlan
from loaders.sources import ShardSet, cached
from shards import openers


class ShardCountError(ValueError):
    """A shard holds fewer samples than its manifest says."""


def iter_shard(url: str, needed: np.ndarray) -> Iterator[tuple[int, dict]]:
    """``(offset, sample)`` for the sorted ``needed`` offsets of one shard."""
    if len(needed) == 0:
        return
    wanted = set(int(o) for o in needed)
    last = int(needed[-1])
    offset = -1
    with openers.open_url(url) as stream:
        source = [{"url": url, "stream": stream}]
        for offset, sample in enumerate(group_by_keys(tar_file_expander(source))):
            if offset in wanted:
                yield offset, sample
            if offset >= last:
                return
    raise ShardCountError(f"{url}: ends after {offset + 1} samples, the plan needs offset {last}")


def plan_samples(plan: RankPlan, batches, shard_set: ShardSet, units: int = 1,
                 cache_dir: str | None = None) -> Iterator[tuple[int, list]]:
    """For each batch index in ``batches``: ``(j, [(sample, side, is_pad), ...])``.

    Plan positions count training examples (``units`` per stored sample: 2 in ssl mode), so a
    stored sample is read once and handed out ``units`` times.
    """
    batches = list(batches)
    if not batches:
        return
    parts = [plan.batch(j) for j in batches]
    unit_pos = np.concatenate([p for p, _ in parts])
    sample_pos = unit_pos // units          # global position of the stored sample
    uses = Counter(sample_pos.tolist())
    order = np.unique(sample_pos)           # read order: shard by shard, offset by offset
    starts = plan.shard_starts // units
    slot = np.searchsorted(starts, order, side="right") - 1
    reader = _stream(plan, shard_set, order, slot, starts, cache_dir)
    held: dict[int, dict] = {}
    for j, (positions, pads) in zip(batches, parts):
        items = []
        for unit, pad in zip(positions.tolist(), pads.tolist()):
            pos = unit // units
            while pos not in held:
                got_pos, sample = next(reader)
                held[got_pos] = sample
            sample = held[pos]
            uses[pos] -= 1
            if uses[pos] == 0:
                del held[pos]
            items.append((sample, unit % units, pad))
        yield j, items


def _stream(plan, shard_set, order, slot, starts, cache_dir):
    """Global positions in ``order`` -> their samples, opening each shard once."""
    i = 0
    while i < len(order):
        k = slot[i]
        end = np.searchsorted(slot, k, side="right")
        shard = shard_set.shards[int(plan.shard_order[k])]
        offsets = order[i:end] - starts[k]
        url = cached(shard.url, cache_dir)
        for offset, sample in iter_shard(url, offsets):
            sample["__where__"] = shard.url
            yield int(starts[k] + offset), sample
        i = end
