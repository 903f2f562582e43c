"""`--lesion-fraction` of the synthetic dataset: parsed, in the manifest's params and the cache key."""
from __future__ import annotations

import pytest

from ingest import adapters
from ingest.adapters import synthetic
from ingest.build_command import config_from_args
from ingest.cli import build_parser


def _config(*extra):
    args = build_parser().parse_args(["build-shards", "--out", "x", *extra])
    return config_from_args(args)


def test_flag_reaches_the_manifest_params_with_the_default_otherwise():
    assert _config("--lesion-fraction", "0.8").build_params()["lesion_fraction"] == 0.8
    assert _config().build_params()["lesion_fraction"] == synthetic.DEFAULT_LESION_FRACTION


def test_lesion_fraction_is_part_of_the_generated_set_key():
    a = synthetic.generation_params(24, 0, None, 0.3)
    b = synthetic.generation_params(24, 0, None, 0.8)
    assert a != b and a["lesion_fraction"] == 0.3


def test_load_exams_passes_it_to_the_generator(monkeypatch):
    seen = {}
    monkeypatch.setattr(synthetic, "load", lambda cache_dir, **kw: seen.update(kw))
    adapters.load_exams("synthetic", lesion_fraction=0.7)
    assert seen["lesion_fraction"] == 0.7
    seen.clear()
    adapters.load_exams("synthetic")
    assert "lesion_fraction" not in seen   # the generator's default


def test_out_of_range_fraction_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["build-shards", "--out", "x", "--lesion-fraction", "1.5"])
    assert exc.value.code == 2
    assert "fraction" in capsys.readouterr().err
