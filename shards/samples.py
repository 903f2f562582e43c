"""Reading shards back: a tar's members grouped into samples, the one loop over tar members.

A sample is the run of consecutive members ``<key>.<field>`` that share a key, as the writer lays
them out, returned as the schema's dict ``{"__key__": key, "<field>": bytes}`` (decode it with
``shards.schema``). Members that are not regular files or not named ``<key>.<field>`` (no dot, or
a directory) are skipped and reported to ``on_problem``. Tars are read as a stream (``r|``), so
the same code reads local files, HTTP bodies and S3 objects.
"""
from __future__ import annotations

import tarfile
from typing import Callable, Iterator

from shards import openers
from shards.dali_index import Component


def iter_samples(url, *, endpoint: str | None = None) -> Iterator[dict]:
    """The samples of the shard at ``url`` (path or URL), in tar order."""
    with openers.open_url(url, endpoint=endpoint) as stream:
        for sample, _ in read_tar(stream):
            yield sample


def read_tar(stream, *, on_problem: Callable[[str], None] | None = None
             ) -> Iterator[tuple[dict, list[Component]]]:
    """``(sample, members)`` for each sample of a tar stream; ``members``: where each of its
    fields lies in the tar (what the shard's DALI index lists)."""
    current: dict | None = None
    members: list[Component] = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isreg():
                _report(on_problem, f"unexpected member {member.name!r} (not a file)")
                continue
            key, dot, ext = member.name.partition(".")
            if not key or not dot or "/" in member.name:
                _report(on_problem, f"member {member.name!r} is not <key>.<field>")
                continue
            if current is not None and current["__key__"] != key:
                yield current, members
                current, members = None, []
            if current is None:
                current = {"__key__": key}
            current[ext] = tar.extractfile(member).read()
            members.append(Component(ext, member.offset_data, member.size, member.name))
    if current is not None:
        yield current, members


def index_from_tar(fileobj) -> list[list[Component]]:
    """Each sample's members as read back from a tar (to check an index; the writer knows them
    while it writes)."""
    return [members for _, members in read_tar(fileobj)]


def _report(on_problem, message: str) -> None:
    if on_problem is not None:
        on_problem(message)
