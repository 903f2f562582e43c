"""Check a shard set against its manifest: bytes, sha256, sample counts, DALI index, decoding.

Every shard is streamed once: the bytes are hashed and counted while ``samples.read_tar`` walks the members,
so a flipped byte (checksum), a truncated tar (size, unexpected end of data) and a shard whose
sample count disagrees with the manifest are all caught. A deterministic fraction of the samples
(at least one per shard when the fraction is above zero) is decoded through ``shards.schema``.
"""
from __future__ import annotations

import hashlib
import os
import random
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shards import dali_index, manifest as manifest_mod, openers, samples, schema, writer


@dataclass
class ShardCheck:
    name: str
    samples: int = 0
    decoded: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class VerifyReport:
    root: str
    shards: list[ShardCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # set-level problems (manifest, listing)
    notes: list[str] = field(default_factory=list)      # worth knowing, not failures

    @property
    def all_problems(self) -> list[str]:
        return self.problems + [p for s in self.shards for p in s.problems]

    @property
    def ok(self) -> bool:
        return not self.all_problems

    def summary(self) -> str:
        samples = sum(s.samples for s in self.shards)
        decoded = sum(s.decoded for s in self.shards)
        size = sum(s.bytes for s in self.shards)
        state = "OK" if self.ok else f"FAILED ({len(self.all_problems)} problems)"
        return (f"{self.root}: {state}: {len(self.shards)} shards, {samples} samples, "
                f"{size} bytes, {decoded} samples decoded")


def verify(root_or_url, *, sample_fraction: float = 0.05, seed: int = 0, workers: int = 4,
           endpoint: str | None = None, progress=None) -> VerifyReport:
    """Verify every shard listed in the manifest; problems are collected, never raised.

    ``progress(check)`` is called after each shard (e.g. to advance a progress bar).
    """
    root = manifest_mod.root_of(os.fspath(root_or_url))
    report = VerifyReport(root)
    try:
        data = manifest_mod.read_manifest(root, endpoint=endpoint)
    except FileNotFoundError:
        raise   # no shard set there at all: the caller's mistake, not a failed check
    except (OSError, ValueError) as exc:
        report.problems.append(str(exc))
        return report
    records = manifest_mod.all_shards(data)
    if not sum(int(r.get("samples", 0)) for r in records):
        report.problems.append(f"{root}: the manifest lists no samples (an empty set)")
    def one(record):
        check = check_shard(root, record, sample_fraction=sample_fraction, seed=seed,
                            endpoint=endpoint)
        if progress:
            progress(check)
        return check

    with ThreadPoolExecutor(max(1, workers)) as pool:
        report.shards = list(pool.map(one, records))
    _check_listing(root, records, report)
    return report


def check_shard(root: str, record: dict, *, sample_fraction: float = 0.05, seed: int = 0,
                endpoint: str | None = None) -> ShardCheck:
    name = record["name"]
    url = openers.join_url(root, name)
    check = ShardCheck(name)
    rng = random.Random(zlib.crc32(f"{seed}:{name}".encode()))
    try:
        stream = openers.open_url(url, endpoint=endpoint)
    except OSError as exc:
        check.problems.append(f"{name}: cannot open ({exc})")
        return check
    hashing = _HashingReader(stream)
    components: list[list[dali_index.Component]] = []
    keys: set[str] = set()
    readable = False
    try:
        with stream:
            for sample, members in samples.read_tar(
                    hashing, on_problem=lambda problem: check.problems.append(f"{name}: {problem}")):
                key = sample["__key__"]
                if key in keys:
                    check.problems.append(f"{name}: {key}: key appears in two places")
                keys.add(key)
                components.append(members)
                _finish(sample, check, name, sample_fraction, rng)
            hashing.drain()
        readable = True
    except (tarfile.TarError, OSError, EOFError) as exc:
        check.problems.append(f"{name}: unreadable tar ({exc})")
        hashing.drain_quietly()
    check.bytes = hashing.size
    if hashing.size != record["bytes"]:
        check.problems.append(f"{name}: {hashing.size} bytes, manifest says {record['bytes']}")
    if hashing.hexdigest() != record["sha256"]:
        check.problems.append(f"{name}: sha256 {hashing.hexdigest()[:16]}... does not match the "
                              f"manifest's {record['sha256'][:16]}...")
    if check.samples != record["samples"]:
        check.problems.append(f"{name}: {check.samples} samples, manifest says {record['samples']}")
    if record.get("index_name") and readable:
        _check_index(root, record["index_name"], components, check, endpoint)
    return check


def _finish(sample: dict, check: ShardCheck, name: str, fraction: float,
            rng: random.Random) -> None:
    check.samples += 1
    if fraction <= 0 or not (check.decoded == 0 or rng.random() < fraction):
        return
    check.decoded += 1
    try:
        schema.decode(sample, where=name)
    except schema.SchemaError as exc:
        check.problems.append(str(exc))
    except Exception as exc:   # noqa: BLE001 - a damaged sample must not stop the check
        check.problems.append(f"{name}: {sample.get('__key__', '?')}: undecodable "
                              f"({type(exc).__name__}: {exc})")


def _check_index(root, idx_name, components, check: ShardCheck, endpoint) -> None:
    url = openers.join_url(root, idx_name)
    try:
        listed = dali_index.parse_index(openers.read_bytes(url, endpoint=endpoint).decode("ascii"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        check.problems.append(f"{idx_name}: {exc}")
        return
    if listed != components:
        check.problems.append(f"{idx_name}: does not match the members of {check.name}")


def _check_listing(root: str, records: list[dict], report: VerifyReport) -> None:
    """Local roots: note stray tars and temporary files that the manifest does not list."""
    path = openers.local_path(root)
    if path is None or not os.path.isdir(path):
        return
    listed = {r["name"] for r in records} | {r["index_name"] for r in records if r.get("index_name")}
    for entry in sorted(os.listdir(path)):
        if writer.is_temporary(entry):
            report.notes.append(f"{entry}: temporary file of an interrupted writer (safe to delete)")
        elif entry.endswith((".tar", ".idx")) and entry not in listed:
            report.notes.append(f"{entry}: not listed in the manifest (ignored by readers)")


class _HashingReader:
    """Read-only wrapper that hashes and counts the bytes read through it."""

    def __init__(self, raw):
        self._raw = raw
        self._hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        """Hash whatever follows the end-of-archive marker (padding, or appended garbage)."""
        while self.read(1 << 20):
            pass

    def drain_quietly(self) -> None:
        try:
            self.drain()
        except (OSError, ValueError):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
