"""``loaders bench``: a tiny run end to end, and its argument errors."""
from __future__ import annotations

import json

import pytest
import torch

from loaders import cli
from shards import codecs


def test_bench_writes_figures_and_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = cli.main(["bench", "--make-shards", str(tmp_path / "sets"), "--pairs", "24",
                     "--size", "16", "--per-shard", "10", "--shards", "raw", "--backend", "both",
                     "--compare-shards", "png",
                     "--batch-size", "8", "--seconds", "0.2", "--repeats", "1", "--workers", "1",
                     "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["format"] == "raw" and result["samples_in_set"] == 24
    assert result["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    for backend in ("torch", "dali"):
        assert result["backends"][backend]["examples_per_s"] > 0
    assert result["naive_examples_per_s"] > 0 and result["decode_bound_examples_per_s"] > 0
    assert {"vs_decode_bound", "vs_naive", "vs_read_bound", "cpu_vs_decode_bound",
            "cpu_vs_naive"} == set(result["ratios"])
    assert result["backends"]["dali"]["cpu_ms_per_example"] > 0
    torch_run = result["backends"]["torch"]   # one worker: its CPU read from /proc as it runs
    assert torch_run["steady_cpu_ms_per_example"] > torch_run["main_cpu_ms_per_example"] >= 0
    assert result["compare"]["source"].endswith("png")
    assert result["compare"]["backends"]["dali"]["ratio"] > 0
    assert set(result["formats"]) == set(codecs.CODECS)   # every format on the same images
    assert all(f["bytes_per_example"] > 0 and f["decode_bound_examples_per_s"] > 0
               for f in result["formats"].values())
    assert result["formats"]["raw"]["bytes_per_example"] == 2 * 16 * 16 * 2
    printed = capsys.readouterr().out
    assert "naive" in printed and "decode" in printed and "best:" in printed
    assert "format htj2k" in printed


def test_bench_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--mode", "triplets"])
    assert exc.value.code == 2
    assert cli.main(["bench"]) == 2
    assert "--shards is required" in capsys.readouterr().err
    assert cli.main(["bench", "--shards", str(tmp_path / "nothing")]) == 2
    assert "no manifest" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["bench", "--shards", str(tmp_path), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_bench_refuses_a_batch_larger_than_the_set(tmp_path, capsys):
    """The naive baseline drops its last partial batch: with none whole it would wait forever."""
    sets = tmp_path / "sets"
    code = cli.main(["bench", "--make-shards", str(sets), "--pairs", "12", "--size", "16",
                     "--per-shard", "12", "--shards", "raw", "--backend", "torch",
                     "--batch-size", "16", "--seconds", "0.1", "--repeats", "1",
                     "--workers", "1"])
    assert code == 2
    assert "12 examples in the split (pairs mode), fewer than one batch of 16" in capsys.readouterr().err


def test_bench_crops_to_the_patch_size_by_default(tmp_path):
    sets = tmp_path / "sets"
    assert cli.main(["bench", "--make-shards", str(sets), "--pairs", "64", "--size", "16",
                     "--per-shard", "64"]) == 0
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--shards", str(sets / "raw"), "--backend", "torch",
                     "--batch-size", "4", "--seconds", "0.1", "--repeats", "1", "--workers", "1",
                     "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["patch"] == 16 and result["augment"]["size"] == 16
    assert sorted(p.name for p in sets.iterdir()) == sorted(codecs.CODECS)
    assert cli.main(["bench", "--shards", str(sets / "raw"), "--backend", "torch",
                     "--seconds", "0.1", "--repeats", "1", "--workers", "1",
                     "--device", "cpu", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["batch_size"] == cli.CPU_BATCH == 64
