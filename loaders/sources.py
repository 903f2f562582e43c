"""Where a loader's shards are: the manifest's list of URLs with exact sample counts, and an
optional local cache for remote shards."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from shards import manifest as manifest_mod
from shards import openers, publish


@dataclass(frozen=True)
class ShardRef:
    url: str
    samples: int
    index_url: str | None = None


@dataclass(frozen=True)
class ShardSet:
    root: str
    split: str
    shards: tuple[ShardRef, ...]
    params: dict
    endpoint: str | None = None   # S3 endpoint for every read of this set

    @property
    def counts(self) -> list[int]:
        return [s.samples for s in self.shards]

    @property
    def samples(self) -> int:
        return sum(self.counts)

    @property
    def is_local(self) -> bool:
        return all(openers.local_path(s.url) is not None for s in self.shards)


def open_shard_set(source, split: str = "train", *, endpoint: str | None = None) -> ShardSet:
    """A shard set from its root (local path, ``file://``, ``http(s)://``, ``s3://``) or from a
    ready ``ShardSet``; counts come from ``manifest.json``."""
    if isinstance(source, ShardSet):
        return source
    root = manifest_mod.root_of(os.fspath(source))
    data = manifest_mod.read_manifest(root, endpoint=endpoint)
    if split not in data["splits"]:
        raise KeyError(f"{root}: manifest has no split {split!r} (has {sorted(data['splits'])})")
    refs = []
    for record in data["splits"][split]["shards"]:
        index = record.get("index_name")
        refs.append(ShardRef(openers.join_url(root, record["name"]), int(record["samples"]),
                             openers.join_url(root, index) if index else None))
    return ShardSet(root, split, tuple(refs), dict(data.get("params") or {}), endpoint)


def cache_name(url: str) -> str:
    """A readable, collision-free local file name for a URL."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return f"{digest}-{os.path.basename(url.rstrip('/'))}"


def cached(url: str, cache_dir: str | None, endpoint: str | None = None) -> str:
    """A local path for ``url``: the URL itself when local or uncached, else a copy in
    ``cache_dir``, downloaded once and written atomically (temp name, fsync, rename), so
    concurrent workers and ranks never see half a shard."""
    if cache_dir is None or openers.local_path(url) is not None:
        return url
    os.makedirs(cache_dir, exist_ok=True)
    final = os.path.join(cache_dir, cache_name(url))
    if os.path.exists(final):
        return final
    with (publish.atomic_open(final, "wb", fsync_dir=False) as out,
          openers.open_url(url, endpoint=endpoint) as src):
        while chunk := src.read(1 << 20):
            out.write(chunk)
    return final
