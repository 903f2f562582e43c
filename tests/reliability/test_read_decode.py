"""Decoding checks the PNG header against the metadata first; every decoder error is a
SchemaError naming the shard and the key, in the loaders and in ``shards verify``."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from read_sets import damage_sample, pair_set, png_claiming, shard_name

from loaders import make_loader
from shards import cli as shards_cli
from shards import schema
from shards.sampledata import pair_samples


def _sample():
    return dict(next(iter(pair_samples(1, 16, "png"))))


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    """Fail the test if Pillow is asked to open an image at all."""
    def refuse(*args, **kwargs):
        raise AssertionError("the PNG was handed to the decoder")
    monkeypatch.setattr(Image, "open", refuse)


@pytest.mark.parametrize("png, reason", [
    (png_claiming(60000, 60000), "PNG header says 60000x60000, metadata says size 16"),
    (png_claiming(9000, 9000, rows=9000), "PNG header says 9000x9000"),
    (png_claiming(16, 16, depth=8), "bit depth 8"),
    (png_claiming(16, 16, colour=2), "colour type 2"),
    (b"\x89PNG\r\n\x1a\n truncated", "no PNG signature and IHDR header"),
], ids=["huge-header", "zlib-bomb", "8-bit", "colour", "truncated"])
def test_the_header_is_refused_before_decoding(png, reason, no_pixel_decoding):
    sample = dict(_sample(), **{"left.png": png})
    with pytest.raises(schema.SchemaError, match=f"shard-3.tar: .*: left: .*{reason}"):
        schema.decode(sample, where="shard-3.tar")
    with pytest.raises(schema.SchemaError, match=f"shard-3.tar: .*{reason}"):
        schema.decode_batch("pair", [dict(sample, __where__="shard-3.tar")])


def test_the_zlib_bomb_is_small_but_claims_a_large_image():
    bomb = png_claiming(9000, 9000, rows=9000)
    assert len(bomb) < 400_000   # ~160 KB that would inflate to 162 MB


def test_metadata_that_claims_a_larger_size_is_refused_before_decoding(no_pixel_decoding):
    sample = _sample()
    sample["json"] = sample["json"].replace(b'"size":16', b'"size":9000')
    sample["left.png"] = png_claiming(9000, 9000, rows=10)
    with pytest.raises(schema.SchemaError, match="x.tar: .*size 9000, the shard set's patches "
                                                 "are 16"):
        schema.decode_batch("pair", [dict(sample, __where__="x.tar")], size=16)


def test_any_decoder_error_becomes_a_schema_error(monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("decoder internals")
    monkeypatch.setattr(Image, "open", explode)
    with pytest.raises(schema.SchemaError, match="s.tar: .*: left: undecodable PNG "
                                                 r"\(RuntimeError: decoder internals\)"):
        schema.decode(_sample(), where="s.tar")


def _plant(root, png):
    return damage_sample(root, lambda s: s.update({"left.png": png}))


@pytest.mark.parametrize("png", [png_claiming(60000, 60000), png_claiming(9000, 9000, rows=9000)],
                         ids=["huge-header", "zlib-bomb"])
def test_the_loader_names_shard_and_key(tmp_path, png):
    root = pair_set(tmp_path)
    key = _plant(root, png)
    loader = make_loader(root, batch_size=4, workers=0)
    with pytest.raises(schema.SchemaError, match=f"{shard_name(root, 1)}: {key}: left: PNG header"):
        list(loader)


def test_verify_reports_a_bomb_and_does_not_crash(tmp_path, capsys):
    root = pair_set(tmp_path)
    key = _plant(root, png_claiming(60000, 60000))
    code = shards_cli.main(["verify", root, "--sample-fraction", "1", "--quiet"])
    out = capsys.readouterr()
    assert code == 1
    assert f"{shard_name(root, 1)}: {key}: left: PNG header says 60000x60000" in out.out + out.err
    assert "Traceback" not in out.out + out.err


def test_decoded_pixels_are_unchanged_by_the_header_check():
    sample = _sample()
    image = schema.decode(sample).left
    assert image.dtype == np.uint16 and image.shape == (16, 16)
