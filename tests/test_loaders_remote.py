"""Streaming from object storage (moto S3) and HTTP on 127.0.0.1, with and without a cache."""
from __future__ import annotations

import os

import pytest

from loaders import AugmentSpec, make_loader, synthetic
from loader_checks import real_keys

SPEC = AugmentSpec(size=8)
EXPECTED = [f"pair_{i:06d}" for i in range(9)]


@pytest.fixture
def s3_root(s3_server):
    bucket = s3_server.new_bucket("loaders")
    root = f"s3://{bucket}/pairs"
    synthetic.pair_set(root, counts=(4, 5))
    return root


@pytest.mark.parametrize("workers", [0, 2])
def test_torch_streams_from_s3(s3_root, workers):
    batches = list(make_loader(s3_root, batch_size=4, augment=SPEC, workers=workers))
    assert sorted(real_keys(batches)) == EXPECTED


def test_torch_s3_with_local_cache(s3_root, tmp_path):
    cache = tmp_path / "cache"
    first = list(make_loader(s3_root, batch_size=4, augment=SPEC, workers=0, cache_dir=cache))
    names = sorted(os.listdir(cache))
    assert sorted(n.rsplit(".", 1)[-1] for n in names) == ["idx", "idx", "tar", "tar"]
    again = list(make_loader(s3_root, batch_size=4, augment=SPEC, workers=0, cache_dir=cache))
    assert real_keys(first) == real_keys(again) and sorted(real_keys(again)) == EXPECTED
    assert sorted(os.listdir(cache)) == names      # nothing downloaded twice, no temp files


def test_dali_reads_s3_through_the_cache(s3_root, tmp_path):
    pytest.importorskip("nvidia.dali")
    with pytest.raises(ValueError, match="cache_dir"):
        list(make_loader(s3_root, backend="dali", batch_size=4))
    batches = list(make_loader(s3_root, backend="dali", batch_size=4, augment=SPEC,
                               cache_dir=tmp_path / "cache"))
    assert sorted(real_keys(batches)) == EXPECTED


def test_torch_streams_over_http(http_server, tmp_path):
    synthetic.pair_set(tmp_path / "site", counts=(4, 5))
    base = http_server(tmp_path / "site")
    batches = list(make_loader(base, batch_size=4, augment=SPEC, workers=1, world_size=2,
                               rank=1))
    batches += list(make_loader(base, batch_size=4, augment=SPEC, workers=1, world_size=2,
                                rank=0))
    assert sorted(real_keys(batches)) == EXPECTED


def test_explicit_endpoint_reaches_every_read(s3_root, s3_server, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    endpoint = s3_server.endpoint_url
    batches = list(make_loader(s3_root, batch_size=4, augment=SPEC, workers=1,
                               endpoint=endpoint))
    assert sorted(real_keys(batches)) == EXPECTED
    cached = list(make_loader(s3_root, batch_size=4, augment=SPEC, workers=0,
                              endpoint=endpoint, cache_dir=tmp_path / "c"))
    assert sorted(real_keys(cached)) == EXPECTED
