"""The build parameters have one source each: the frozen records of ``ingest.params``."""
import dataclasses
import inspect

import pytest

from ingest import normalize
from ingest.cache import PairCache
from ingest.config import BuildConfig
from ingest.params import NormalizeParams, PairParams, QualityParams, RegisterParams, TileParams


def test_normalize_defaults_come_from_normalize_params():
    params = inspect.signature(normalize.normalize_dataset).parameters
    got = {name: params[name].default for name in dataclasses.asdict(NormalizeParams())}
    assert got == dataclasses.asdict(NormalizeParams())
    assert params["out_shape"].default == PairParams().out_shape


def test_cache_key_is_the_pair_params(tmp_path):
    config = BuildConfig(dataset="vindr", out=str(tmp_path))
    key = dataclasses.asdict(config.pair_params())
    assert key == {"out_shape": PairParams().out_shape,
                   "registration": dataclasses.asdict(RegisterParams()),
                   "normalize": dataclasses.asdict(NormalizeParams())}
    # The patch size is not in the key; a registration or normalisation setting is.
    same = BuildConfig(dataset="vindr", out=str(tmp_path), size=256, seed=3)
    rigid = BuildConfig(dataset="vindr", out=str(tmp_path),
                        registration=RegisterParams(transform="rigid"))
    cropped = BuildConfig(dataset="vindr", out=str(tmp_path), normalize=NormalizeParams(crop="breast"))
    hashes = [PairCache(tmp_path, dataclasses.asdict(c.pair_params())).params_hash
              for c in (config, same, rigid, cropped)]
    assert hashes[0] == hashes[1] and len(set(hashes)) == 3


def test_manifest_params_are_the_set_params(tmp_path):
    config = BuildConfig(dataset="vindr", out=str(tmp_path), size=64, quality={"dice_after": 0.9})
    params = dataclasses.asdict(config.pair_set_params())
    assert params["quality"] == {"dice_after": 0.9, "ncc_after": QualityParams.ncc_after}
    assert params["stride"] == 64 and params["registration"] == dataclasses.asdict(RegisterParams())
    assert params["patients"] is None and params["image_size"] is None
    patch = dataclasses.asdict(config.patch_set_params("birads"))
    assert patch["task"] == "birads" and "stride" not in patch and "max_border_xor" not in patch
    assert {k: v for k, v in params.items() if k not in ("stride", "max_border_xor")} == \
        {k: v for k, v in patch.items() if k != "task"}


def test_unknown_quality_threshold_is_refused(tmp_path):
    with pytest.raises(TypeError):
        BuildConfig(dataset="vindr", out=str(tmp_path), quality={"dice": 0.9}).quality_params()


def test_tile_stride_defaults_to_the_size():
    assert TileParams(size=64).stride == 64 and TileParams(size=64, stride=32).stride == 32


def test_command_defaults_are_the_records():
    from ingest.cli import build_parser

    args = build_parser().parse_args(["build-shards", "--out", "x"])
    assert (args.size, args.max_background, args.max_border_xor) == \
        (TileParams.size, TileParams.max_background, TileParams.max_border_xor)
    assert tuple(args.out_shape) == PairParams.out_shape and args.transform is None
