"""Streaming exactly the planned samples out of tar shards, in the plan's order.

A worker is given batch indices; ``plan_samples`` works out which ``(shard, offset)`` samples they
need, reads each shard once in order (only the needed samples' bytes where the shard has a DALI
index, else a stream through ``shards.samples``, stopping after the last needed sample), and hands
samples out in the plan's (window-shuffled) order, holding at most about a shuffle window of them.
"""
from __future__ import annotations

import hashlib
import logging
import tarfile
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from loaders.epochs import RankPlan
from loaders.sources import cached
from shards import dali_index, openers, samples
from shards.shardset import ShardSet


log = logging.getLogger("loaders")

ON_ERROR = ("raise", "skip")
VERIFY = (None, "sha256")
SKIP_FIELD = "__skip__"   # a planned sample that could not be read: why (``on_error="skip"``)


class ShardCountError(ValueError):
    """A shard holds another number of samples than its manifest says."""


class ShardChecksumError(ValueError):
    """A shard's bytes do not match the manifest's size or sha256."""


@dataclass(frozen=True)
class ReadChecks:
    """What a loader checks while reading, and what it does with a failure.

    ``verify="sha256"``: every shard is hashed (one extra read of it) and compared with the
    manifest before any of its samples is handed out. ``on_error="raise"``: the first unreadable
    shard or sample stops the epoch with an error naming it; ``"skip"``: its samples are left
    out, counted and reported (their slots become padding)."""
    on_error: str = "raise"
    verify: str | None = None

    def __post_init__(self):
        if self.on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if self.verify not in VERIFY:
            raise ValueError(f"verify must be one of {VERIFY}, got {self.verify!r}")


# What reading a shard can fail with, short of a bug: a damaged or short tar, a count that
# disagrees with the manifest, a checksum, the network (after the retries).
READ_ERRORS = (ShardCountError, ShardChecksumError, tarfile.TarError, EOFError, OSError)


def check_sha256(url: str, shard, endpoint: str | None = None) -> None:
    """Hash the shard at ``url`` and compare it with the manifest's record (``shard``: a
    ``ShardRef``); raises ``ShardChecksumError`` naming the shard."""
    if shard.sha256 is None:
        raise ShardChecksumError(f"{shard.url}: the manifest records no sha256 to verify against")
    digest, size = hashlib.sha256(), 0
    with openers.open_url(url, endpoint=endpoint) as stream:
        while True:
            block = stream.read(1 << 20)
            if not block:
                break
            digest.update(block)
            size += len(block)
    if shard.bytes is not None and size != shard.bytes:
        raise ShardChecksumError(f"{shard.url}: {size} bytes, the manifest says {shard.bytes}")
    if digest.hexdigest() != shard.sha256:
        raise ShardChecksumError(f"{shard.url}: sha256 {digest.hexdigest()[:16]}... does not "
                                 f"match the manifest's {shard.sha256[:16]}...")


def iter_shard(url: str, needed: np.ndarray, endpoint: str | None = None,
               expected: int | None = None) -> Iterator[tuple[int, dict]]:
    """``(offset, sample)`` for the sorted ``needed`` offsets of one shard. ``expected``: the
    manifest's count; when the plan reaches the shard's last sample, one more member is looked
    for, so a shard holding more samples than its manifest says is an error, not a silent loss."""
    if len(needed) == 0:
        return
    wanted = set(int(o) for o in needed)
    last = int(needed[-1])
    offset = -1
    stored = samples.iter_samples(url, endpoint=endpoint)
    try:
        for offset, sample in enumerate(stored):
            if offset in wanted:
                yield offset, sample
            if offset >= last:
                if expected is not None and last == expected - 1 and next(stored, None) is not None:
                    raise ShardCountError(f"{url}: holds more than the {expected} samples its "
                                          f"manifest says (those would never be read)")
                return
    finally:
        stored.close()
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
                 cache_dir: str | None = None, checks: ReadChecks = ReadChecks()
                 ) -> Iterator[tuple[int, list]]:
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
    reader = _stream(plan, shard_set, order, slot, starts, cache_dir, checks)
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


def _stream(plan, shard_set, order, slot, starts, cache_dir, checks: ReadChecks):
    """Global positions in ``order`` -> their samples, opening each shard once. A shard that
    cannot be read raises (``on_error="raise"``) or gives, for each of its planned samples not
    yet handed out, a stand-in that says why (``"skip"``)."""
    i = 0
    while i < len(order):
        k = slot[i]
        end = np.searchsorted(slot, k, side="right")
        shard = shard_set.shards[int(plan.shard_order[k])]
        offsets = order[i:end] - starts[k]
        done: set[int] = set()
        try:
            for offset, sample in _read_shard(shard, shard_set.endpoint, offsets, cache_dir,
                                              checks):
                sample["__where__"] = shard.url
                done.add(offset)
                yield int(starts[k] + offset), sample
        except READ_ERRORS as exc:
            reason = str(exc) if shard.url in str(exc) else f"{shard.url}: {exc}"
            if checks.on_error == "raise":
                kind = type(exc) if isinstance(exc, (ShardCountError, ShardChecksumError,
                                                     FileNotFoundError, PermissionError)) \
                    else ShardReadError
                raise kind(reason) from exc
            log.warning("skipping the unread samples of %s", reason)
            _problems.append(reason)
            for offset in offsets.tolist():
                if offset not in done:
                    yield int(starts[k] + offset), {
                        "__key__": f"{shard.url.rsplit('/', 1)[-1]}#{offset}",
                        "__where__": shard.url, SKIP_FIELD: reason}
        i = end


_problems: list[str] = []   # shard-level problems met in this process, until taken


def take_problems() -> list[str]:
    """The shard-level problems met (and skipped) in this process since the last call."""
    taken = list(_problems)
    _problems.clear()
    return taken


class ShardReadError(OSError):
    """A shard that could not be read (damaged tar, network failure after the retries)."""


def _read_shard(shard, endpoint, offsets, cache_dir, checks: ReadChecks):
    url = cached(shard.url, cache_dir, endpoint)
    if checks.verify == "sha256":
        check_sha256(url, shard, endpoint)
    if shard.index_url is None:
        yield from iter_shard(url, offsets, endpoint, expected=shard.samples)
        return
    index = shard_index(shard.index_url, cache_dir, endpoint)
    if len(index) == shard.samples:
        yield from iter_shard_indexed(url, index, offsets, endpoint)
        return
    problem = ShardCountError(f"{shard.url}: the index lists {len(index)} samples, the "
                              f"manifest says {shard.samples}")
    if checks.on_error == "raise":
        raise problem
    # skip: read what both agree on; the planned samples past the index are then skipped
    yield from iter_shard_indexed(url, index, offsets[offsets < len(index)], endpoint)
    if len(index) < shard.samples:
        raise problem
    log.warning("%s (the samples past the manifest's count are not read)", problem)
    _problems.append(str(problem))
