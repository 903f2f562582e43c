"""``BatchMeta``: metadata parsed on first read, sent as its JSON text."""
from __future__ import annotations

import pickle

import pytest

from loaders.metadata import BatchMeta


def test_reads_like_the_list_it_holds():
    items = [{"patient": "p1", "area": {"pair": 0.5}}, {"patient": "p2", "area": {"pair": 0.0}}]
    meta = BatchMeta(items)
    assert len(meta) == 2 and meta[1]["patient"] == "p2" and meta[-1] is items[-1]
    assert [m["area"]["pair"] for m in meta] == [0.5, 0.0]
    assert meta == items and meta == BatchMeta(items) and meta != items[:1]
    assert meta + meta == items + items
    assert meta[:1] == items[:1]


def test_pickled_as_text_and_parsed_only_when_read():
    text = b'[{"k":1},{"k":2}]'
    meta = BatchMeta([{"k": 1}, {"k": 2}], text)
    data = pickle.dumps(meta)
    assert text in data
    back = pickle.loads(data)
    assert back._items is None and len(back) == 2 and back._items is None   # len: no parse
    assert back[0] == {"k": 1} and back._items is not None


def test_without_text_the_items_are_dumped():
    back = pickle.loads(pickle.dumps(BatchMeta([{"a": [1, 2]}])))
    assert list(back) == [{"a": [1, 2]}]
    with pytest.raises(ValueError):
        BatchMeta()
