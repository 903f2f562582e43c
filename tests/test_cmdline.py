"""The command-line conventions every command shares (shards/cmdline.py)."""
import pytest

from shards import cmdline


def _parser(func):
    parser = cmdline.Parser(prog="tool")
    sub = parser.add_subparsers(dest="command", parser_class=cmdline.Parser)
    p = sub.add_parser("go")
    cmdline.add_workers(p, 2, "processes")
    cmdline.add_quiet(p)
    p.set_defaults(func=func)
    return parser


@pytest.mark.parametrize("error", [FileNotFoundError("x.tar: no such file"),
                                   ValueError("x.tar: not a shard"),
                                   cmdline.UsageError("--a needs --b")])
def test_user_errors_are_one_line_and_exit_2(error, capsys):
    def fail(args):
        raise error

    assert cmdline.run_main(_parser(fail), ["go"]) == 2
    assert capsys.readouterr().err == f"tool: error: {error}\n"


def test_a_bug_is_not_dressed_as_a_user_error():
    def bug(args):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        cmdline.run_main(_parser(bug), ["go"])


def test_shared_flags_one_spelling_one_type(capsys):
    seen = []
    parser = _parser(seen.append)
    assert cmdline.run_main(parser, ["go"]) == 0
    assert cmdline.run_main(parser, ["go", "--quiet", "--workers", "3"]) == 0
    assert cmdline.run_main(parser, ["go", "--no-progress"]) == 0
    assert [(a.quiet, a.workers) for a in seen] == [(False, 2), (True, 3), (True, 2)]
    with pytest.raises(SystemExit) as exc:
        cmdline.run_main(parser, ["go", "--workers", "0"])
    assert exc.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_benchmarks_start_as_package_sub_commands(tmp_path, capsys):
    """``<package> bench``: the arguments after the sub-command reach the benchmark's own parser."""
    import json

    from ingest import cli as ingest_cli
    from shards import cli as shards_cli

    figures = tmp_path / "bench.json"
    assert shards_cli.main(["bench", "--out", str(tmp_path / "scratch"), "--pairs-96", "4",
                            "--pairs-256", "2", "--repeats", "1", "--skip-read",
                            "--json", str(figures)]) == 0
    rows = json.loads(figures.read_text())["write"]
    assert {(r["size"], r["format"]) for r in rows} == {(96, "png"), (96, "raw"),
                                                        (256, "png"), (256, "raw")}
    capsys.readouterr()
    for argv in (["bench", "--workers", "0"], ["bench-register", "--pairs", "0"]):
        with pytest.raises(SystemExit) as exc:
            ingest_cli.main(argv)
        assert exc.value.code == 2
        assert f"ingest {argv[0]}: error: argument {argv[1]}" in capsys.readouterr().err
