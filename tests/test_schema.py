import json

import numpy as np
import pytest

from shards import schema


def _meta(size):
    return {"size": size, "bits": 16, "dataset": "synthetic", "patient": "p1", "study": "s.1",
            "view": "CC", "row": 0, "col": 1, "box": [0, size, size, 2 * size],
            "background": {"left": 0.1, "right": 0.2},
            "area": {"left": 0.0, "right": 0.5, "pair": 0.5}, "split": "train"}


@pytest.mark.parametrize("fmt", ["png", "raw"])
@pytest.mark.parametrize("size", [96, 256])
def test_pair_round_trip_is_bit_exact(fmt, size):
    rng = np.random.default_rng(size)
    left = rng.integers(0, 65536, (size, size), dtype=np.uint16)
    right = rng.integers(0, 4096, (size, size), dtype=np.uint16)
    key = schema.make_key("synthetic", "1.2.840.3", "CC", "r000c001")
    sample = schema.encode_pair(key, left, right, _meta(size), fmt=fmt)
    ext = schema.EXTENSIONS[fmt]
    assert set(sample) == {"__key__", f"left.{ext}", f"right.{ext}", "json"}
    assert "." not in sample["__key__"]
    decoded = schema.decode_pair(sample)
    assert decoded.left.dtype == np.uint16 and np.array_equal(decoded.left, left)
    assert np.array_equal(decoded.right, right)
    assert decoded.meta["kind"] == "pair" and decoded.meta["study"] == "s.1"
    assert schema.sample_format(sample) == fmt


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_patch_round_trip(fmt):
    image = np.arange(96 * 96, dtype=np.uint16).reshape(96, 96)
    meta = {"size": 96, "bits": 16, "task": "abnormal", "label": 1, "split": "val"}
    decoded = schema.decode_patch(schema.encode_patch("k-1", image, meta, fmt=fmt))
    assert np.array_equal(decoded.image, image) and decoded.meta["label"] == 1


def test_decode_errors_name_shard_and_key():
    size = 96
    img = np.zeros((size, size), np.uint16)
    sample = schema.encode_pair("k1", img, img, _meta(size))
    broken = dict(sample, json=json.dumps({**_meta(size), "size": 64, "kind": "pair"}).encode())
    with pytest.raises(schema.SchemaError, match=r"train-000003.tar: k1: left: PNG header says "
                                                 r"96x96, metadata says size 64"):
        schema.decode_pair(broken, where="train-000003.tar")
    with pytest.raises(schema.SchemaError, match="metadata lacks"):
        schema.decode_pair(dict(sample, json=b'{"kind": "pair"}'), where="x.tar")
    with pytest.raises(schema.SchemaError, match="undecodable"):
        schema.decode_pair(dict(sample, **{"left.png": b"\x89PNG garbage"}), where="x.tar")


def test_encode_rejects_bad_input():
    img8 = np.zeros((96, 96), np.uint8)
    with pytest.raises(schema.SchemaError, match="uint16"):
        schema.encode_pair("k", img8, img8, _meta(96))
    with pytest.raises(schema.SchemaError, match="invalid sample key"):
        schema.encode_pair("a.b", np.zeros((96, 96), np.uint16), np.zeros((96, 96), np.uint16), _meta(96))
    with pytest.raises(schema.SchemaError, match="unknown pixel format"):
        schema.encode_pair("k", np.zeros((96, 96), np.uint16), np.zeros((96, 96), np.uint16), _meta(96), fmt="jpg")


def test_metadata_builders_give_what_the_decoder_requires():
    meta = schema.pair_meta(size=96, bits=12, dataset="d", patient="p", study="s.1", view="CC",
                            row=2, col=3, y0=48, x0=96, background=(0.12345678, 0.5),
                            area=(0.0, 0.25, 0.25), split="val", registered_side="left")
    assert meta["box"] == [48, 96, 144, 192] and meta["kind"] == "pair"
    assert meta["background"] == {"left": 0.123457, "right": 0.5}
    assert meta["area"] == {"left": 0.0, "right": 0.25, "pair": 0.25}
    assert meta["registered_side"] == "left"
    image = np.zeros((96, 96), np.uint16)
    assert schema.decode_pair(schema.encode_pair("k", image, image, meta)).meta == meta
    patch = schema.patch_meta(size=96, bits=12, task="abnormal", label=True, split="test",
                              y0=0, x0=8, side="right")
    assert patch["label"] == 1 and patch["box"] == [0, 8, 96, 104] and patch["side"] == "right"
    assert schema.decode(schema.encode_patch("k", image, patch)).meta == patch
    with pytest.raises(schema.SchemaError, match="set by the schema"):
        schema.patch_meta(size=96, bits=12, task="t", label=0, split="val", kind="pair")
    with pytest.raises(schema.SchemaError, match="figures"):
        schema.pair_meta(size=96, bits=12, dataset="d", patient="p", study="s", view="CC",
                         row=0, col=0, y0=0, x0=0, background=(0.1,), area=(0, 0, 0),
                         split="val")


def test_image_fields_per_kind_and_format():
    assert schema.image_fields("pair", "png") == ("left.png", "right.png")
    assert schema.image_fields("patch", "raw") == ("u16",)
    with pytest.raises(schema.SchemaError, match="kind"):
        schema.image_fields("triplet", "png")
