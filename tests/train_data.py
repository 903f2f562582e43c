"""Small pair shard sets with train and val splits for the training tests."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from shards import manifest, sampledata, writer


def split_set(root, counts=None, size=16, fmt="png") -> str:
    """One shard set holding several splits (``counts``: split -> samples per shard)."""
    counts = counts or {"train": (12, 12), "val": (8,)}
    records, start = [], 0
    for split, per_shard in counts.items():
        for index, count in enumerate(per_shard):
            samples = sampledata.pair_samples(count, size, fmt, seed=start + 1, split=split,
                                              start=start)
            records.append(writer.write_shard(samples, root, split, index))
            start += count
    manifest.write_manifest(root, manifest.build_manifest(records, {"size": size, "bits": 12,
                                                                    "format": fmt}))
    return str(root)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster
    than two contending threads (imported by the training test modules)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def patch_set(root, size=16):
    """A labelled abnormal/normal set whose label is in the brightness (learnable)."""
    from shards import schema

    rng = np.random.default_rng(4)
    records, number = [], 0
    for split, count in (("train", 40), ("val", 12), ("test", 12)):
        samples = []
        for i in range(count):
            label = i % 2
            image = rng.integers(500 + 2000 * label, 1500 + 2000 * label, (size, size))
            meta = {"kind": "patch", "size": size, "bits": 12, "task": "abnormal",
                    "label": label, "split": split}
            key = schema.make_key("synthetic", f"p{number % 6}", "1", "CC", "left", number)
            samples.append(schema.encode_patch(key, image.astype(np.uint16), meta))
            number += 1
        records.append(writer.write_shard(samples, str(root), split, 0))
    manifest.write_manifest(str(root), manifest.build_manifest(
        records, {"size": size, "bits": 12, "format": "png", "task": "abnormal"}))
    return str(root)
