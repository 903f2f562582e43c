"""A local cache for remote shards (the shard set itself is ``shards.shardset.ShardSet``)."""
from __future__ import annotations

import hashlib
import os

from shards import openers, publish


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
