"""``BatchMeta``: a batch's per-example metadata dicts, parsed only when read.

A batch carries each example's JSON metadata (patient, view, grid position, ...) for logging
and evaluation; most training steps never look at it. Unpickling some 64 nested dicts per batch
in the training process, and the garbage collections their allocation sets off there, cost a
third of what receiving a batch from a DataLoader worker costs. Workers therefore send the
batch's JSON text as it was read from the shards, and the dicts are built on first access.
"""
from __future__ import annotations

import json
from collections.abc import Sequence


class BatchMeta(Sequence):
    """A read-only sequence of metadata dicts (one per example of the batch).

    ``items``: the parsed dicts, when already at hand; ``text``: the same as one JSON array
    (``b"[{...},{...}]"``). Pickling sends the text only.
    """

    __slots__ = ("_items", "_text", "_count")

    def __init__(self, items: list | None = None, text: bytes | None = None,
                 count: int | None = None):
        if items is None and text is None:
            raise ValueError("BatchMeta needs its items or their JSON text")
        self._items, self._text = items, text
        self._count = len(items) if items is not None else count

    def _list(self) -> list:
        if self._items is None:
            self._items = json.loads(self._text)
        return self._items

    def __getitem__(self, index):
        return self._list()[index]

    def __len__(self) -> int:
        return self._count if self._count is not None else len(self._list())

    def __iter__(self):
        return iter(self._list())

    def __add__(self, other) -> list:
        return list(self) + list(other)

    def __eq__(self, other) -> bool:
        if isinstance(other, (BatchMeta, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"BatchMeta({self._list()!r})"

    def __reduce__(self):
        text = self._text if self._text is not None else json.dumps(self._items).encode()
        return BatchMeta, (None, text, len(self))
