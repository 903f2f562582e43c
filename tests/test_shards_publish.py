"""The one atomic-publish helper: complete under the final name, or nothing at all."""
import pytest

from shards import publish


def test_write_bytes_and_text_leave_only_the_final_file(tmp_path):
    publish.write_bytes(tmp_path / "a.bin", b"\x00\x01")
    publish.write_text(tmp_path / "b.csv", "x\r\ny\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.csv").read_bytes() == b"x\r\ny\n"   # line endings as given
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.csv"]


def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path):
    final = tmp_path / "report.json"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with publish.atomic_open(final, "w") as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_folder_published_by_another_writer_first_is_not_an_error(tmp_path):
    final = tmp_path / "group"
    final.mkdir()
    (final / "done").write_text("theirs")
    with publish.publishing(final, done_elsewhere=lambda: (final / "done").is_file()) as tmp:
        tmp.mkdir()
        (tmp / "done").write_text("ours")
    assert (final / "done").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["group"]   # our copy removed
    with pytest.raises(OSError):
        with publish.publishing(final) as tmp:
            tmp.mkdir()
            (tmp / "x").write_text("")
    assert [p.name for p in tmp_path.iterdir()] == ["group"]


def test_temporary_names_are_hidden_and_recognised(tmp_path):
    name = publish.temporary_name(tmp_path / "train-000000.tar")
    assert name.parent == tmp_path and publish.is_temporary(name.name)
    assert not publish.is_temporary("train-000000.tar")
