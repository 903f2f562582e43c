"""Streaming exactly the planned samples out of tar shards, in the plan's order.

A worker is given batch indices; ``plan_samples`` works out which ``(shard, offset)`` samples they
need, reads each shard once in order (only the needed samples' bytes where the shard has a DALI
index, else a stream through ``shards.samples``, stopping after the last needed sample), and hands
samples out in the plan's (window-shuffled) order, holding at most about a shuffle window of them.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterator

import numpy as np

from loaders.epochs import RankPlan
from loaders.sources import cached
from shards import dali_index, openers, samples
from shards.shardset import ShardSet


class ShardCountError(ValueError):
    """A shard holds fewer samples than its manifest says."""


def iter_shard(url: str, needed: np.ndarray, endpoint: str | None = None
               ) -> Iterator[tuple[int, dict]]:
    """``(offset, sample)`` for the sorted ``needed`` offsets of one shard."""
    if len(needed) == 0:
        return
    wanted = set(int(o) for o in needed)
    last = int(needed[-1])
    offset = -1
    for offset, sample in enumerate(samples.iter_samples(url, endpoint=endpoint)):
        if offset in wanted:
            yield offset, sample
        if offset >= last:
            return
    raise ShardCountError(f"{url}: ends after {offset + 1} samples, the plan needs offset {last}")


# Samples whose bytes lie within this span of each other are fetched with one read: one system
# call (and one Python-level read) per few dozen samples instead of one per member.
READ_SPAN = 1 << 20


def iter_shard_indexed(url: str, components: list, needed: np.ndarray,
                       endpoint: str | None = None):
    """``(offset, sample)`` for the sorted ``needed`` offsets, reading only their bytes: the DALI
    index gives every member's data offset and size, so no tar header is parsed and skipped
    samples are seeked over (or read past, on a stream that cannot seek).

    Neighbouring needed samples are read together (up to ``READ_SPAN`` bytes) and handed out as
    zero-copy ``memoryview`` slices of that read (the ``json`` member as ``bytes``)."""
    if len(needed) == 0:
        return
    if int(needed[-1]) >= len(components):
        raise ShardCountError(f"{url}: the index lists {len(components)} samples, the plan "
                              f"needs offset {int(needed[-1])}")
    wanted = needed.tolist()
    with openers.open_url(url, endpoint=endpoint) as stream:
        seekable = getattr(stream, "seekable", lambda: False)()
        pos, i = 0, 0
        while i < len(wanted):
            start = components[wanted[i]][0].offset
            j, end = i, start
            # grow the chunk while the next sample ends within the span of its start
            while j < len(wanted):
                members = components[wanted[j]]
                last = members[-1].offset + members[-1].size
                if j > i and last - start > READ_SPAN:
                    break
                end, j = last, j + 1
            if start < pos:
                raise ShardCountError(f"{url}: index offsets go backwards at "
                                      f"{components[wanted[i]][0].name}")
            if start > pos:
                if seekable:
                    stream.seek(start)
                else:
                    _read_exactly(stream, start - pos, url)
            chunk = memoryview(_read_exactly(stream, end - start, url))
            pos = end
            for offset in wanted[i:j]:
                yield offset, _sample(components[offset], chunk, start, url)
            i = j


def _sample(members: list, chunk: memoryview, base: int, url: str) -> dict:
    sample = {"__key__": members[0].name.rsplit("/", 1)[-1].split(".", 1)[0]}
    prev = -1
    for c in members:
        if c.offset < prev:
            raise ShardCountError(f"{url}: index offsets go backwards at {c.name}")
        prev = c.offset + c.size
        ext = c.ext.lower()
        data = chunk[c.offset - base:prev - base]
        sample[ext] = bytes(data) if ext == "json" else data
    return sample


def _read_exactly(stream, n: int, url: str) -> bytes:
    data = stream.read(n)
    while len(data) < n:
        more = stream.read(n - len(data))
        if not more:
            raise ShardCountError(f"{url}: ends before the index says (truncated shard?)")
        data += more
    return data


_INDEX_CACHE: dict[str, list] = {}


def shard_index(index_url: str, cache_dir: str | None, endpoint: str | None = None):
    """Parsed DALI index of a shard (kept per process; index files are small)."""
    if index_url not in _INDEX_CACHE:
        local = cached(index_url, cache_dir, endpoint)
        text = openers.read_bytes(local, endpoint=endpoint).decode("utf-8")
        _INDEX_CACHE[index_url] = dali_index.parse_index(text)
    return _INDEX_CACHE[index_url]


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
        endpoint = shard_set.endpoint
        url = cached(shard.url, cache_dir, endpoint)
        if shard.index_url is not None:
            index = shard_index(shard.index_url, cache_dir, endpoint)
            samples = iter_shard_indexed(url, index, offsets, endpoint)
        else:
            samples = iter_shard(url, offsets, endpoint)
        for offset, sample in samples:
            sample["__where__"] = shard.url
            yield int(starts[k] + offset), sample
        i = end
