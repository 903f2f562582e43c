"""Synthetic shard sets (tissue-like 1/f^3 noise, 12-bit) for the loader's tests and benchmark,
written with the project's own shard writer and manifest."""
from __future__ import annotations

import numpy as np

from shards import manifest, sampledata, schema, writer


def pair_set(root, counts=(5, 7, 3), size=16, fmt="png", split="train", seed=0) -> str:
    """Shards of synthetic pairs with ``counts[i]`` samples each; returns the root."""
    records, start = [], 0
    for index, count in enumerate(counts):
        samples = sampledata.pair_samples(count, size, fmt, seed=seed * 1000 + index, split=split, start=start)
        records.append(writer.write_shard(samples, root, split, index))
        start += count
    manifest.write_manifest(root, manifest.build_manifest(records, {"size": size, "bits": 12,
                                                                    "format": fmt}))
    return str(root)


def patch_set(root, counts=(6, 5), size=16, fmt="png", split="train") -> str:
    """Shards of labelled patches (label = number % 3)."""
    rng = np.random.default_rng(0)
    records, number = [], 0
    for index, count in enumerate(counts):
        samples = []
        for _ in range(count):
            meta = schema.patch_meta(size=size, bits=12, task="abnormal", label=number % 3,
                                     split=split, dataset="synthetic", patient=f"p{number}")
            image = sampledata.tissue_patch(rng, size)
            samples.append(schema.encode_patch(schema.make_key("patch", f"{number:05d}"), image,
                                               meta, fmt=fmt))
            number += 1
        records.append(writer.write_shard(samples, root, split, index))
    manifest.write_manifest(root, manifest.build_manifest(records, {"size": size, "bits": 12}))
    return str(root)


def real_keys(batches) -> list[str]:
    """Keys of the non-padded slots, in order."""
    return [k for b in batches for k, pad in zip(b["key"], b["is_pad"].tolist()) if not pad]
