"""The pixel formats (shards/codecs.py): bit-exact round trips, both loader backends reading
every format alike, and ``shards convert``."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from loaders import AugmentSpec, make_loader, synthetic
from shards import cli, codecs, manifest, samples, schema
from shards.convert import convert

FORMATS = tuple(codecs.CODECS)


def _image(rng, size: int, bits: int) -> np.ndarray:
    image = rng.integers(0, 2 ** bits, (size, size)).astype(np.uint16)
    image[0, 0], image[-1, -1] = 0, 2 ** bits - 1   # both ends of the range
    return image


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size", [96, 256])
@pytest.mark.parametrize("bits", [12, 14, 16])
def test_round_trip_is_bit_exact(fmt, size, bits):
    rng = np.random.default_rng(size * 100 + bits)
    for image in (_image(rng, size, bits), np.full((size, size), 2 ** bits - 1, np.uint16)):
        data = schema.encode_image(image, fmt)
        out = schema.decode_image(data, fmt, size)
        assert out.dtype == np.uint16 and np.array_equal(out, image)


@pytest.mark.parametrize("fmt", FORMATS)
def test_sample_round_trip_and_batch_decode(fmt):
    rng = np.random.default_rng(1)
    left, right = _image(rng, 96, 12), _image(rng, 96, 16)
    meta = schema.pair_meta(size=96, bits=16, dataset="d", patient="p", study="s", view="CC",
                            row=0, col=0, y0=0, x0=0, background=(0, 0), area=(0, 0, 0),
                            split="train")
    sample = schema.encode_pair("k", left, right, meta, fmt=fmt)
    assert schema.sample_format(sample) == fmt
    assert set(schema.image_fields("pair", fmt)) <= set(sample)
    decoded = schema.decode(sample)
    assert np.array_equal(decoded.left, left) and np.array_equal(decoded.right, right)
    batch = schema.decode_batch("pair", [sample, sample])
    assert np.array_equal(batch.pixels[1, 0], left) and np.array_equal(batch.pixels[1, 1], right)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "raw"])
def test_wrong_size_and_garbage_are_schema_errors(fmt):
    data = schema.encode_image(np.zeros((16, 16), np.uint16), fmt)
    with pytest.raises(schema.SchemaError):
        schema.decode_image(data, fmt, 32)
    for garbage in (b"\0" * 64, data[: len(data) // 2]):
        with pytest.raises(schema.SchemaError):
            schema.decode_image(garbage, fmt, 16)


def test_unknown_format_is_refused():
    with pytest.raises(schema.SchemaError, match="unknown pixel format"):
        schema.image_fields("pair", "webp")


def _pixels_by_key(root):
    out = {}
    for url in manifest.shard_urls(root, "train"):
        for sample in samples.iter_samples(url):
            decoded = schema.decode(sample)
            out[decoded.key] = (decoded.images, sample[schema.META_FIELD])
    return out


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "png"])
def test_convert_keeps_every_pixel(tmp_path, fmt):
    src = synthetic.pair_set(tmp_path / "src", counts=(3, 2), size=16, fmt="png")
    out = tmp_path / "out"
    assert cli.main(["convert", src, "--format", fmt, "--out", str(out), "--workers", "1"]) == 0
    new = manifest.read_manifest(out)
    old = manifest.read_manifest(src)
    assert new["params"]["format"] == fmt and new["converted_from"]["format"] == "png"
    assert new["totals"]["samples"] == old["totals"]["samples"]
    assert all(r["index_name"] and os.path.exists(out / r["index_name"])
               for r in manifest.all_shards(new))
    before, after = _pixels_by_key(src), _pixels_by_key(out)
    assert list(before) == list(after)   # keys, in order
    for key, (images, meta) in before.items():
        assert meta == after[key][1]
        assert all(np.array_equal(a, b) for a, b in zip(images, after[key][0]))
    # back to png: the same bytes as the source's shards
    back = tmp_path / "back"
    convert(out, "png", back, log=lambda *_: None)
    assert [r["sha256"] for r in manifest.all_shards(manifest.read_manifest(back))] == \
        [r["sha256"] for r in manifest.all_shards(old)]


def test_convert_refuses_an_existing_folder(tmp_path, capsys):
    src = synthetic.pair_set(tmp_path / "src", counts=(2,), size=16, fmt="png")
    (tmp_path / "out").mkdir()
    assert cli.main(["convert", src, "--format", "raw", "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_both_backends_agree_bit_for_bit(tmp_path, fmt):
    """Identity augmentation: the torch backend and the DALI backend (its decoder for the
    format, reading through our index files) give the same tensors."""
    pytest.importorskip("nvidia.dali")
    root = synthetic.pair_set(tmp_path / fmt, counts=(4, 3), size=16, fmt=fmt)
    spec = AugmentSpec.identity(16)
    out = {}
    for backend in ("torch", "dali"):
        batches = list(make_loader(root, backend=backend, batch_size=4, augment=spec, workers=1))
        out[backend] = {k: (b["left"][i], b["right"][i])
                        for b in batches for i, k in enumerate(b["key"])}
    assert sorted(out["torch"]) == sorted(out["dali"]) and len(out["torch"]) == 7
    for key, (left, right) in out["torch"].items():
        assert torch.equal(left, out["dali"][key][0]) and torch.equal(right, out["dali"][key][1])


def test_manifest_params_name_the_format(tmp_path):
    root = synthetic.pair_set(tmp_path / "s", counts=(2,), size=16, fmt="htj2k")
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["params"]["format"] == \
        "htj2k" and root
