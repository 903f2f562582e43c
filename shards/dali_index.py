"""DALI webdataset index files (``.idx`` beside each ``.tar``).

The format read by ``fn.readers.webdataset(index_paths=...)`` (the one DALI's ``wds2idx`` writes):
a version line ``v1.2 <number of samples>``, then one line per sample listing its components as
``<extension> <data offset> <size> <member name>`` groups separated by spaces. Offsets point at the
member's data (just after its 512-byte tar header). The writer knows these offsets while writing,
so it never has to re-scan the tar (``samples.index_from_tar`` reads them back, for checks).
"""
from __future__ import annotations

from dataclasses import dataclass

INDEX_VERSION = "v1.2"


@dataclass(frozen=True)
class Component:
    ext: str       # the member name after the sample key's first dot ("left.png", "json")
    offset: int    # byte offset of the member's data in the tar
    size: int      # data size in bytes
    name: str      # full member name ("<key>.<ext>")


def format_index(samples: list[list[Component]]) -> str:
    """Index text for samples given in tar order, each a list of its components in tar order."""
    if not samples:
        raise ValueError("a DALI index needs at least one sample")
    lines = [f"{INDEX_VERSION} {len(samples)}"]
    for components in samples:
        for c in components:
            if " " in c.name or "\n" in c.name:
                raise ValueError(f"member name {c.name!r} cannot go in a DALI index (whitespace)")
        lines.append(" ".join(f"{c.ext} {c.offset} {c.size} {c.name}" for c in components))
    return "\n".join(lines) + "\n"


def parse_index(text: str) -> list[list[Component]]:
    """Parse index text back into components; raises ValueError on a malformed index."""
    lines = text.splitlines()
    if not lines:
        raise ValueError("empty DALI index")
    head = lines[0].split()
    if len(head) != 2 or head[0] != INDEX_VERSION or not head[1].isdigit():
        raise ValueError(f"DALI index header is {lines[0]!r}, expected '{INDEX_VERSION} <count>'")
    body = [line for line in lines[1:] if line.strip()]
    if int(head[1]) != len(body):
        raise ValueError(f"DALI index announces {head[1]} samples but lists {len(body)}")
    samples = []
    for number, line in enumerate(body, start=2):
        parts = line.split()
        if len(parts) % 4:
            raise ValueError(f"DALI index line {number}: expected groups of 4 fields")
        samples.append([Component(parts[i], int(parts[i + 1]), int(parts[i + 2]), parts[i + 3])
                        for i in range(0, len(parts), 4)])
    return samples
