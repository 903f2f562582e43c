"""The batch decoder: the same batch as the schema's per-sample decoder, and its errors."""
from __future__ import annotations

import numpy as np
import pytest

from loaders import modes
from shards import sampledata, schema


def _items(samples, mode):
    if mode == "ssl":
        return [(s, side, i == 0) for i, s in enumerate(samples) for side in (1, 0)]
    return [(s, 0, i == 0) for i, s in enumerate(samples)]


def _reference(mode, items, j):
    examples = []
    for sample, side, pad in items:
        images, meta, key = modes.decode(mode, sample, "")
        examples.append((images, meta, key, side, pad))
    return modes.assemble(mode, examples, j)


def _patches(fmt, n=3, size=8):
    rng = np.random.default_rng(1)
    return [schema.encode_patch(f"patch_{i}", sampledata.tissue_patch(rng, size),
                                {"size": size, "bits": 12, "task": "t", "label": i % 2,
                                 "split": "train"}, fmt=fmt) for i in range(n)]


@pytest.mark.parametrize("fmt", ["png", "raw"])
@pytest.mark.parametrize("mode", ["pairs", "ssl", "labelled"])
def test_batch_decoder_matches_the_schema_decoder(mode, fmt):
    samples = (_patches(fmt) if mode == "labelled"
               else list(sampledata.pair_samples(3, 8, fmt, seed=3)))
    items = _items(samples, mode)
    got, want = modes.decode_batch(mode, items, 5), _reference(mode, items, 5)
    assert set(got) == set(want)
    assert got["pixels"].dtype == np.uint16
    for name in got:
        if isinstance(want[name], np.ndarray):
            np.testing.assert_array_equal(got[name], want[name])
        else:
            assert got[name] == want[name]


def _raw_pairs():
    return [dict(s, __where__="shard-7.tar") for s in sampledata.pair_samples(3, 8, "raw", seed=4)]


@pytest.mark.parametrize("damage, reason", [
    (lambda s: s.update(json=b"{not json"), "unreadable json"),
    (lambda s: s.update({"left.u16": s["left.u16"][:-2]}), "bytes"),
    (lambda s: s.pop("right.u16"), "right"),
    (lambda s: s.update(json=s["json"].replace(b'"kind":"pair"', b'"kind":"patch"')), "kind"),
])
def test_a_bad_sample_gets_the_schema_error_naming_it(damage, reason):
    samples = _raw_pairs()
    damage(samples[1])
    with pytest.raises(schema.SchemaError, match=reason) as info:
        modes.decode_batch("pairs", _items(samples, "pairs"), 0)
    assert "shard-7.tar" in str(info.value) and samples[1]["__key__"] in str(info.value)


def test_undecodable_png_is_a_schema_error():
    samples = [dict(s, __where__="s.tar") for s in sampledata.pair_samples(2, 8, "png", seed=5)]
    samples[0]["left.png"] = b"\x89PNG broken"
    with pytest.raises(schema.SchemaError, match="undecodable"):
        modes.decode_batch("pairs", _items(samples, "pairs"), 0)
