"""The ``synth`` sub-command: a good run, and bad arguments rejected with one line and exit code 2."""
import json
import subprocess
import sys

import pytest

from ingest.synth.command import register
from shards.cmdline import Parser, run_main


def _parser():
    parser = Parser(prog="ingest")
    register(parser.add_subparsers(dest="command", parser_class=Parser))
    return parser


def test_cli_writes_a_dataset_and_preview(tmp_path, capsys):
    out, png = tmp_path / "ds", tmp_path / "sheet.png"
    rc = run_main(_parser(), ["synth", "--layout", "vindr", "--patients", "2", "--out", str(out),
                              "--image-size", "128", "96", "--lesion-fraction", "1", "--preview", str(png),
                              "--workers", "1", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["patients"] == 2 and summary["images"] >= 8
    assert (out / "breast-level_annotations.csv").exists() and (out / "ground_truth.json").exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args", [
    ["--layout", "ddsm", "--patients", "2"],
    ["--layout", "vindr", "--patients", "-3"],
    ["--layout", "vindr", "--patients", "0"],
    ["--layout", "vindr", "--patients", "2", "--lesion-fraction", "1.5"],
    ["--layout", "vindr", "--patients", "2", "--image-size", "10", "10"],
    ["--layout", "vindr", "--patients", "2", "--workers", "0"],
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args):
    with pytest.raises(SystemExit) as exc:
        run_main(_parser(), ["synth", *args, "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_unwritable_output_folder_exits_2(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "ingest.synth", "--layout", "optimam", "--patients", "1",
                           "--out", str(blocker / "sub"), "--image-size", "128", "96", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not writable" in lines[0]


def test_cli_positioning_only_is_recorded(tmp_path, capsys):
    out = tmp_path / "po"
    rc = run_main(_parser(), ["synth", "--layout", "optimam", "--patients", "1", "--out", str(out),
                              "--image-size", "128", "96", "--lesion-fraction", "0", "--studies", "1", "1",
                              "--positioning-only", "--workers", "1", "--quiet"])
    assert rc == 0
    truth = json.loads((out / "ground_truth.json").read_text())
    assert truth["pair_variation"] == "positioning-only"
    cc = {im["laterality"]: im for im in truth["images"] if im["view"] == "CC"}
    assert cc["L"]["shape"] == cc["R"]["shape"]
    assert cc["L"]["transform"]["compression"] == cc["R"]["transform"]["compression"]
    # The default run records no pair_variation (its files keep their bytes).
    default = tmp_path / "default"
    assert run_main(_parser(), ["synth", "--layout", "optimam", "--patients", "1", "--out", str(default),
                                "--image-size", "128", "96", "--workers", "1", "--quiet"]) == 0
    assert "pair_variation" not in json.loads((default / "ground_truth.json").read_text())
