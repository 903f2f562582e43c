"""``shards convert SRC --format F --out DST``: the same shard set in another pixel format,
without running the build again.

Every shard is read, each image decoded with its own codec, encoded with ``F``, decoded back and
compared pixel for pixel with the source before it is written; keys, metadata (the ``json``
bytes as stored), sample order, shard names and splits are kept. The new set's manifest has the
source's params with ``format`` set to ``F`` (so a new ``params_hash``), its extra keys, and
``converted_from`` (the source's format and content digest); every shard gets a new DALI index.

The set is written into a temporary folder beside ``DST`` and renamed to ``DST`` when complete
(``publish.publishing``): a failed or interrupted conversion leaves nothing under ``DST``.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from shards import manifest as manifests
from shards import openers, publish, samples, schema, writer


def convert_sample(sample: dict, fmt: str, where: str = "") -> dict:
    """One stored sample with its images in ``fmt``; raises ``SchemaError`` unless the new
    images decode to exactly the source's pixels."""
    decoded = schema.decode(sample, where)
    kind = "patch" if isinstance(decoded, schema.PatchSample) else "pair"
    old = schema.image_fields(kind, schema.sample_format(sample))
    new = schema.image_fields(kind, fmt)
    out = {k: v for k, v in sample.items() if k not in old and not k.startswith("__")}
    out["__key__"] = sample["__key__"]
    size = int(decoded.meta["size"])
    for field, image in zip(new, decoded.images):
        data = schema.encode_image(image, fmt)
        if not np.array_equal(schema.decode_image(data, fmt, size), image):
            raise schema.SchemaError(f"{where}: {decoded.key}: {field} does not decode to the "
                                     f"source's pixels")
        out[field] = data
    return out


def _convert_shard(url: str, record: dict, fmt: str, out: str, endpoint) -> dict:
    converted = (convert_sample(s, fmt, url) for s in samples.iter_samples(url, endpoint=endpoint))
    return writer.write_shard(converted, out, record["split"], record["index"],
                              write_index=True)


def convert(src, fmt: str, out, *, workers: int = 1, endpoint: str | None = None,
            log=print) -> dict:
    """Convert the shard set at ``src`` (local or URL) to pixel format ``fmt`` under the local
    folder ``out`` (which must not exist); returns the new manifest."""
    schema.image_fields("pair", fmt)   # an unknown format fails here, before any work
    root = manifests.root_of(os.fspath(src))
    source = manifests.read_manifest(root, endpoint=endpoint)
    out = os.fspath(out)
    if openers.local_path(out) is None:
        raise ValueError(f"{out}: shards convert writes a local folder (upload it afterwards "
                         "with shards upload)")
    out = openers.local_path(out)
    if os.path.exists(out):
        raise ValueError(f"{out}: already exists; choose a new --out")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    records = manifests.all_shards(source)
    with publish.publishing(out, fsync_dir=True) as tmp:
        os.makedirs(tmp)
        jobs = [(openers.join_url(root, r["name"]), r, fmt, str(tmp), endpoint) for r in records]
        if workers > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
                written = list(pool.map(_convert_shard, *zip(*jobs)))
        else:
            written = [_convert_shard(*job) for job in jobs]
        for old, new in zip(records, written):
            if new["samples"] != old["samples"]:
                raise ValueError(f"{old['name']}: wrote {new['samples']} samples, the source "
                                 f"has {old['samples']}")
        params = dict(source["params"])
        was = params.get("format")
        params["format"] = fmt
        extra = {k: v for k, v in source.items() if k not in manifests.RESERVED_KEYS}
        extra["converted_from"] = {"format": was, "content_digest":
                                   manifests.content_digest(source)}
        manifest = manifests.build_manifest(written, params, extra=extra)
        manifests.write_manifest(str(tmp), manifest)
    t = manifest["totals"]
    log(f"converted {t['samples']} samples in {t['shards']} shards from {was} to {fmt}: "
        f"{source['totals']['bytes']} -> {t['bytes']} bytes, every pixel equal; {out}")
    return manifest
