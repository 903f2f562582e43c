"""Publishing a file or folder under its final name only once it is complete.

Everything the project writes for others to read (shards and their indexes, manifests, reports,
caches, generated data sets, downloaded copies) is written under a hidden temporary name in the
same folder and renamed into place: a rename within a folder is atomic, so a reader, a concurrent
writer or a rerun after a kill sees either nothing or the whole thing. This module is the only
place that renames; it imports nothing else from the project, so every package may use it.

``publishing`` yields the temporary path for any writer (a zarr group, a generator's folder);
``atomic_open`` yields an open file and fsyncs it; ``write_bytes`` and ``write_text`` are the
one-call forms.
"""
from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def temporary_name(final) -> Path:
    """A hidden name beside ``final`` that no other process picks: ``.<name>.tmp-<pid>-<id>``."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temporary(name: str) -> bool:
    """True for hidden temporary names (left behind only by a killed process)."""
    return name.startswith(".") and ".tmp-" in name


def writer_pid(name: str) -> int | None:
    """The pid in a temporary name (``.<name>.tmp-<pid>-<id>``), or None for any other name."""
    if not is_temporary(name):
        return None
    try:
        return int(name.rsplit(".tmp-", 1)[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:         # another user's live process
        return True
    except OSError:
        return False
    try:                            # a zombie (killed, not yet reaped) writes nothing more
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def clean_stale(folder, *, prefix: str = "", max_age: float = 3600.0, grace: float = 0.0,
                now: float | None = None) -> list[str]:
    """Remove the temporary files and folders of dead writers in ``folder``; returns their names.

    An entry is a temporary name of this module (``.<name>.tmp-<pid>-<id>``) whose name after
    the dot starts with ``prefix``. It is stale when its writer's pid no longer runs on this
    host and it is older than ``grace`` seconds, or when it is older than ``max_age`` seconds
    whatever its pid (a writer on another host sharing the folder). A live writer's entry stays.
    """
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        pid = writer_pid(entry.name)
        if pid is None or not entry.name[1:].startswith(prefix):
            continue
        try:
            age = now - entry.lstat().st_mtime
        except OSError:
            continue
        if (not _alive(pid) and age >= grace) or age > max_age:
            _remove(entry)
            removed.append(entry.name)
    return removed


@contextmanager
def publishing(final, *, tmp=None, fsync_dir: bool = True,
               done_elsewhere: Callable[[], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; when the block ends cleanly, rename it to ``final``.

    The caller writes a file or a folder at the yielded path (and fsyncs a file's contents where
    it matters: ``atomic_open`` does). ``tmp`` overrides the temporary name, for callers whose
    cleanup reads it. ``fsync_dir`` makes the rename itself durable. A folder cannot replace a
    non-empty folder: ``done_elsewhere`` says whether another writer published the same content
    first, in which case the failed rename is not an error. Whatever happens, nothing is left
    under the temporary name.
    """
    final = Path(final)
    tmp = Path(tmp) if tmp is not None else temporary_name(final)
    try:
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if done_elsewhere is None or not done_elsewhere():
                raise
        if fsync_dir:
            fsync_directory(final.parent)
    finally:
        _remove(tmp)


@contextmanager
def atomic_open(final, mode: str = "wb", *, fsync: bool = True, fsync_dir: bool = True,
                **open_kwargs):
    """``open(tmp, mode)`` for writing; flushed, fsynced and renamed to ``final`` on a clean exit."""
    with publishing(final, fsync_dir=fsync_dir) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())


def write_bytes(final, data: bytes, *, fsync_dir: bool = True) -> None:
    """Write ``data`` to ``final`` atomically (temporary name, fsync, rename)."""
    with atomic_open(final, "wb", fsync_dir=fsync_dir) as fh:
        fh.write(data)


def write_text(final, text: str, *, fsync_dir: bool = True) -> None:
    """Write UTF-8 ``text`` to ``final`` atomically, line endings as given."""
    with atomic_open(final, "w", fsync_dir=fsync_dir, encoding="utf-8", newline="") as fh:
        fh.write(text)


def fsync_directory(directory) -> None:
    """Make a rename durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
