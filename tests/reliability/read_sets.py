"""Small shard sets with one planted fault, for the read-side reliability tests."""
from __future__ import annotations

import json
import struct
import zlib

from loaders import synthetic
from shards import manifest, samples, writer

SIZE = 16
COUNTS = (5, 7, 3)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int, depth: int = 16, colour: int = 0,
                 rows: int = 0) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height``; ``rows`` rows of zeros are really
    compressed in its IDAT (``rows=height`` makes a genuine zlib bomb)."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    squeeze = zlib.compressobj(9)
    row = b"\0" * (1 + width * depth // 8 * (1 if colour == 0 else 3))
    body = b"".join(squeeze.compress(row) for _ in range(rows)) + squeeze.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body)
            + png_chunk(b"IEND", b""))


def pair_set(root, counts=COUNTS, fmt="png") -> str:
    return synthetic.pair_set(root, counts=counts, size=SIZE, fmt=fmt)


def damage_sample(root, damage, shard: int = 1, sample: int = 2) -> str:
    """Rewrite shard ``shard`` with ``damage(sample_dict)`` applied to its ``sample``-th sample;
    the manifest is updated to the new bytes, so only the sample itself is wrong. Returns the
    damaged sample's key."""
    records = manifest.read_manifest(root)["splits"]["train"]["shards"]
    name = records[shard]["name"]
    stored = list(samples.iter_samples(f"{root}/{name}"))
    damage(stored[sample])
    record = writer.write_shard(stored, root, "train", shard)
    edit_manifest(root, lambda m: m["splits"]["train"]["shards"][shard].update(
        bytes=record["bytes"], sha256=record["sha256"], samples=record["samples"]))
    return stored[sample]["__key__"]


def edit_manifest(root, change) -> None:
    """Apply ``change(manifest_dict)`` to ``root/manifest.json`` and make the totals add up
    again (as an edited but well-formed manifest would)."""
    path = f"{root}/manifest.json"
    with open(path) as f:
        data = json.load(f)
    change(data)
    totals = {"shards": 0, "samples": 0, "bytes": 0}
    for entry in data["splits"].values():
        for field in ("samples", "bytes"):
            entry[field] = sum(r[field] for r in entry["shards"])
            totals[field] += entry[field]
        entry["shard_count"] = len(entry["shards"])
        totals["shards"] += len(entry["shards"])
    data["totals"] = totals
    with open(path, "w") as f:
        json.dump(data, f)


def shard_name(root, shard: int) -> str:
    return manifest.read_manifest(root)["splits"]["train"]["shards"][shard]["name"]


def flip_byte(root, shard: int, sample: int, field: str, at: int = 0) -> None:
    """Flip one byte of a stored member in place, leaving the manifest as it was."""
    from shards import dali_index

    record = manifest.read_manifest(root)["splits"]["train"]["shards"][shard]
    with open(f"{root}/{record['index_name']}") as f:
        members = dali_index.parse_index(f.read())[sample]
    member = next(c for c in members if c.ext == field)
    with open(f"{root}/{record['name']}", "r+b") as f:
        f.seek(member.offset + at)
        byte = f.read(1)
        f.seek(member.offset + at)
        f.write(bytes([byte[0] ^ 0x01]))
