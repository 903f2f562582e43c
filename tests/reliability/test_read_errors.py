"""One-line errors and exit code 2 on the read side's commands."""
from __future__ import annotations

from shards import cli as shards_cli


def _one_line_exit_2(code, capsys, *needles):
    out = capsys.readouterr()
    assert code == 2
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.err, out.err
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_verify_on_a_missing_set_exits_2(tmp_path, capsys):
    code = shards_cli.main(["verify", str(tmp_path / "nothing-here"), "--quiet"])
    _one_line_exit_2(code, capsys, "shards: error:", "nothing-here")
