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


def test_ls_on_s3_without_credentials_is_one_line(s3_server, monkeypatch, capsys):
    bucket = s3_server.new_bucket("nocreds")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")   # no instance-role lookups
    import s3fs
    s3fs.S3FileSystem.clear_instance_cache()
    code = shards_cli.main(["ls", f"s3://{bucket}/set"])
    _one_line_exit_2(code, capsys, "no S3 credentials", f"s3://{bucket}/set/manifest.json")


def test_labelled_bench_on_pair_shards_is_one_line(tmp_path, capsys):
    from loaders import cli as loaders_cli
    from loaders import synthetic

    root = synthetic.pair_set(tmp_path / "pairs", counts=(3,))
    code = loaders_cli.main(["bench", "--shards", root, "--mode", "labelled", "--seconds", "0.1",
                             "--repeats", "1", "--backend", "torch", "--workers", "1"])
    _one_line_exit_2(code, capsys, "holds pair samples", "mode 'labelled'")


def test_labelled_loader_on_pair_shards_says_so(tmp_path):
    import pytest

    from loaders import make_loader, synthetic

    root = synthetic.pair_set(tmp_path / "pairs", counts=(3,))
    with pytest.raises(ValueError, match="holds pair samples; mode 'labelled' reads patch"):
        make_loader(root, mode="labelled")


def test_dali_on_s3_without_a_cache_is_refused_at_once(s3_server, capsys):
    from loaders import cli as loaders_cli
    from loaders import synthetic

    root = f"s3://{s3_server.new_bucket('dali')}/pairs"
    synthetic.pair_set(root, counts=(3,))
    code = loaders_cli.main(["bench", "--shards", root, "--backend", "dali", "--seconds", "0.1",
                             "--repeats", "1"])
    _one_line_exit_2(code, capsys, "--cache-dir DIR")


def test_bench_takes_a_remote_sets_bytes_from_the_manifest(s3_server):
    from loaders import bench, synthetic
    from shards import manifest
    from shards.shardset import open_shard_set

    root = f"s3://{s3_server.new_bucket('bytes')}/pairs"
    synthetic.pair_set(root, counts=(3, 2))
    stated = manifest.read_manifest(root)["splits"]["train"]["bytes"]
    assert bench.tar_bytes(open_shard_set(root)) == stated > 0
