"""The shard reader: members grouped into samples, odd members reported, offsets as DALI's."""
from __future__ import annotations

import io
import tarfile

from shards import dali_index, samples, sampledata, verify, writer


def _tar(path, members):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_members_are_grouped_by_key_and_odd_ones_reported(tmp_path):
    path = tmp_path / "odd.tar"
    _tar(path, [("a.json", b"{}"), ("a.left.png", b"L"), ("sub", None), ("noext", b"x"),
                ("b.json", b"[]"), ("a.json", b"{}")])
    problems = []
    with open(path, "rb") as f:
        read = list(samples.read_tar(f, on_problem=problems.append))
    assert [s for s, _ in read] == [{"__key__": "a", "json": b"{}", "left.png": b"L"},
                                    {"__key__": "b", "json": b"[]"}, {"__key__": "a", "json": b"{}"}]
    assert [[m.name for m in members] for _, members in read] == [
        ["a.json", "a.left.png"], ["b.json"], ["a.json"]]
    assert problems == ["unexpected member 'sub' (not a file)",
                        "member 'noext' is not <key>.<field>"]
    assert [s["__key__"] for s in samples.iter_samples(str(path))] == ["a", "b", "a"]


def test_offsets_match_the_writers_index(tmp_path):
    record = writer.write_shard(sampledata.pair_samples(3, 16), tmp_path, "train", 0)
    with open(tmp_path / record["name"], "rb") as f:
        assert samples.index_from_tar(f) == dali_index.parse_index(
            (tmp_path / record["index_name"]).read_text())


def test_verify_reports_a_key_in_two_places(tmp_path):
    _tar(tmp_path / "train-000000.tar", [("a.json", b"{}"), ("b.json", b"{}"), ("a.json", b"{}")])
    record = {"name": "train-000000.tar", "bytes": 0, "sha256": "0" * 64, "samples": 3}
    check = verify.check_shard(str(tmp_path), record, sample_fraction=0.0)
    assert check.samples == 3
    assert "train-000000.tar: a: key appears in two places" in check.problems
