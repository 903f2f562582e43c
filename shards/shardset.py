"""A shard set as its readers see it: one split's shard URLs with exact sample counts (from the
manifest), the build parameters and the S3 endpoint every read of the set uses."""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from shards import manifest as manifest_mod
from shards import openers, samples, schema


@dataclass(frozen=True)
class ShardRef:
    url: str
    samples: int
    index_url: str | None = None
    bytes: int | None = None      # size and checksum from the manifest (verified reads)
    sha256: str | None = None


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
    def bytes(self) -> int | None:
        """The split's size in bytes as the manifest records it (None if it does not say)."""
        sizes = [s.bytes for s in self.shards]
        return None if any(b is None for b in sizes) else sum(sizes)

    @property
    def is_local(self) -> bool:
        return all(openers.local_path(s.url) is not None for s in self.shards)

    def patch_size(self) -> int:
        """The side of the stored patches: the build parameters' ``size``, else (a manifest
        that does not say) the first sample's."""
        if self.params.get("size") is not None:
            return int(self.params["size"])
        for shard in self.shards:
            with contextlib.closing(samples.iter_samples(shard.url, endpoint=self.endpoint)) as stored:
                for sample in stored:
                    return int(json.loads(sample[schema.META_FIELD])["size"])
        raise ValueError(f"{self.root}: split {self.split!r} holds no samples")


def sample_kind(shard_set: ShardSet) -> str | None:
    """``"pair"`` or ``"patch"``: what the set holds, from its build parameters (a patch set's
    record a ``task``, a pair set's a ``stride``), else, for a local set, from its first sample's
    metadata; None when neither says (a remote set whose parameters do not)."""
    if "task" in shard_set.params:
        return "patch"
    if "stride" in shard_set.params:
        return "pair"
    if not shard_set.is_local:
        return None
    for shard in shard_set.shards:
        with contextlib.closing(samples.iter_samples(shard.url)) as stored:
            for sample in stored:
                try:
                    return json.loads(sample[schema.META_FIELD]).get("kind")
                except (KeyError, ValueError, AttributeError):
                    return None
    return None


def open_shard_set(source, split: str = "train", *, endpoint: str | None = None) -> ShardSet:
    """A shard set from its root (local path, ``file://``, ``http(s)://``, ``s3://``) or from a
    ready ``ShardSet``; counts come from ``manifest.json``."""
    if isinstance(source, ShardSet):
        return source
    root = manifest_mod.root_of(os.fspath(source))
    data = manifest_mod.read_manifest(root, endpoint=endpoint)
    refs = []
    for record in manifest_mod.split_shards(data, split, root):
        index = record.get("index_name")
        refs.append(ShardRef(openers.join_url(root, record["name"]), int(record["samples"]),
                             openers.join_url(root, index) if index else None,
                             record.get("bytes"), record.get("sha256")))
    return ShardSet(root, split, tuple(refs), dict(data.get("params") or {}), endpoint)
