"""Atomic shard writer: one call writes one ``{split}-{NNNNNN}.tar`` and its DALI ``.idx``.

Tar headers are deterministic (mtime 0, uid/gid 0, empty owner names, mode 0o444, fields in sorted
order), so the same samples give byte-identical shards. The tar is written under a hidden
temporary name, flushed, fsynced and renamed; the index is renamed first, so a tar under its final
name always has its index. Remote URLs (``s3://`` ...) are written to a local temporary file and
uploaded with one ``put`` to the final name, so a half-written object is never visible.

Each call is independent: parallel Dask tasks each write their own shards and return the records;
the driver merges them into ``manifest.json`` (see manifest.py).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from typing import Iterable

from shards import dali_index, openers, publish
from shards.schema import SchemaError

SHARD_NAME = "{split}-{index:06d}.tar"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_FIELD_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
TAR_FORMAT = tarfile.GNU_FORMAT  # long member names (long study UIDs in keys) stay readable by DALI


def shard_name(split: str, index: int) -> str:
    if not _SPLIT_NAME.match(split or ""):
        raise ValueError(f"invalid split name {split!r}: use letters, digits, '_' and '-'")
    if int(index) < 0:
        raise ValueError(f"shard index must be >= 0, got {index}")
    return SHARD_NAME.format(split=split, index=int(index))


def index_name(name: str) -> str:
    return name[: -len(".tar")] + ".idx"


def write_shard(samples: Iterable[dict], out, split: str, index: int, *,
                write_index: bool = True) -> dict:
    """Write one shard of encoded samples (``schema.encode_*`` dicts) to ``out``.

    ``out`` is a local directory or an fsspec URL (``file://``, ``s3://``). Returns the shard
    record ``{"name", "split", "index", "samples", "bytes", "sha256", "index_name"}``.
    An exception from ``samples`` (or a bad sample) leaves nothing under the final names.
    """
    name = shard_name(split, index)
    idx_name = index_name(name) if write_index else None
    out = os.fspath(out)
    local_dir = openers.local_path(out)
    if local_dir is not None:
        os.makedirs(local_dir, exist_ok=True)
        return _write_local(samples, local_dir, name, idx_name, split, index)
    staging = tempfile.mkdtemp(prefix="shard-")
    try:
        record = _write_local(samples, staging, name, idx_name, split, index)
        fs, root = openers.filesystem(out)
        s3 = openers.scheme(out) == "s3"
        # Index first: a tar visible under its final name always has its index beside it.
        # On S3 each object carries its sha256, which lets `shards upload` skip it later.
        if idx_name:
            idx_path = os.path.join(staging, idx_name)
            with open(idx_path, "rb") as f:
                idx_sha = hashlib.sha256(f.read()).hexdigest()
            fs.put_file(idx_path, f"{root.rstrip('/')}/{idx_name}",
                        **({"Metadata": {"sha256": idx_sha}} if s3 else {}))
        fs.put_file(os.path.join(staging, name), f"{root.rstrip('/')}/{name}",
                    **({"Metadata": {"sha256": record["sha256"]}} if s3 else {}))
        return record
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_local(samples, directory: str, name: str, idx_name: str | None, split: str,
                 index: int) -> dict:
    final = os.path.join(directory, name)
    with publish.atomic_open(final, "wb") as raw:
        stream = _HashingWriter(raw)
        entries = _write_tar(samples, stream, final)
        stream.flush()
        if idx_name:
            # Index first: the tar is renamed after this block, with its index already there.
            publish.write_bytes(os.path.join(directory, idx_name),
                                dali_index.format_index(entries).encode("ascii"))
    return {"name": name, "split": split, "index": int(index), "samples": len(entries),
            "bytes": stream.size, "sha256": stream.hexdigest(), "index_name": idx_name}


def _write_tar(samples, stream, where: str) -> list[list[dali_index.Component]]:
    entries: list[list[dali_index.Component]] = []
    seen: set[str] = set()
    with tarfile.open(fileobj=stream, mode="w", format=TAR_FORMAT) as tar:
        for sample in samples:
            key = _check_sample(sample, seen, where)
            components = []
            for field in sorted(f for f in sample if f != "__key__"):
                data = sample[field]
                member = f"{key}.{field}"
                tar.addfile(_tarinfo(member, len(data)), io.BytesIO(data))
                # tar.offset now sits after the member's zero-padded data blocks.
                data_offset = tar.offset - _padded(len(data))
                components.append(dali_index.Component(field, data_offset, len(data), member))
            entries.append(components)
    if not entries:
        raise ValueError(f"{where}: no samples to write")
    return entries


def _check_sample(sample: dict, seen: set, where: str) -> str:
    key = sample.get("__key__") if isinstance(sample, dict) else None
    if not isinstance(key, str) or not key or "." in key or "/" in key or " " in key:
        raise SchemaError(f"{where}: invalid sample key {key!r} (use schema.make_key)")
    if key in seen:
        raise SchemaError(f"{where}: {key}: duplicate sample key")
    seen.add(key)
    fields = [f for f in sample if f != "__key__" and not f.startswith("__")]
    if not fields:
        raise SchemaError(f"{where}: {key}: sample has no fields")
    for field in fields:
        if not _FIELD_NAME.match(field):
            raise SchemaError(f"{where}: {key}: invalid field name {field!r}")
        if not isinstance(sample[field], (bytes, bytearray, memoryview)):
            raise SchemaError(f"{where}: {key}: field {field} is {type(sample[field]).__name__}, "
                              "expected bytes (encode with shards.schema)")
    extra = [f for f in sample if f.startswith("__") and f != "__key__"]
    if extra:
        raise SchemaError(f"{where}: {key}: unexpected fields {extra}")
    return key


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


class _HashingWriter:
    """Write-only file wrapper that hashes and counts what goes through it (one pass, no re-read).

    tarfile writes each member as three small pieces (header, data, padding); gathering them into
    1 MiB chunks keeps the per-call cost of hashing and writing off the per-member path.
    """

    CHUNK = 1 << 20

    def __init__(self, raw):
        self._raw = raw
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self.size = 0

    def write(self, data) -> int:
        self._pending += data
        self.size += len(data)
        if len(self._pending) >= self.CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._pending:
            self._hash.update(self._pending)
            self._raw.write(self._pending)
            self._pending = bytearray()

    def tell(self) -> int:
        return self.size

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# Readers (``shards verify``) skip the writer's hidden temporaries by this test.
is_temporary = publish.is_temporary
