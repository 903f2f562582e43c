"""The zarr cache of registered pairs: one group per pair, keyed by its inputs and parameters.

Layout::

    <cache>/pairs/<params-hash>/<pair-id>-<input-hash>/
        zarr.json          attributes (``PairRecord``): provenance, registered side, ROIs,
                           quality, geometry
        pixels/            uint16 (2, H, W): [left, right] after registration (one moved)
        masks/             uint8  (2, H, W): the breast masks, same grid

``params-hash`` covers what changes the pixels (``asdict`` of ``ingest.params.PairParams``:
output shape, normalisation and registration settings; and the cache version); the patch size, stride and tiling rules are NOT in it, so ``--size 96`` and ``--size
256`` share one registration. ``input-hash`` covers the two source files (path, size, mtime) and
their annotations, so a changed input is registered again.

Pixel chunks are (2, 128, 128) inside one zarr shard (one file per pair); the masks, only ever
read whole, are one chunk (one file: measured ~3x faster to read whole than 128-pixel chunks,
and ~10 ms less to write per pair). Pixel tiles
are read one by one from a random permutation of all pairs, so a whole-pair read per tile would
read ~4 MB to use ~40 kB; with 128-pixel chunks a tile reads 1-4 chunks whatever its size (96 or
256, both measured at ~1.6 ms per tile pair on the development machine, against ~3 ms for
32-pixel chunks, which waste no bytes but pay per chunk).

Each pair is written into a hidden temporary group and renamed into place, so a killed run leaves
either a complete entry or none; a rerun skips complete entries.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from shards import publish

CACHE_VERSION = 3   # 3: a pair keeps the better of its registered and initial alignment
CHUNK = 128
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _compressors():
    """Blosc LZ4 with byte shuffle: measured ~40% faster to write than zarr's default zstd on
    a 1152x896 pair, and a little faster to read, for ~5% more bytes."""
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]


def _alive(pid: int) -> bool:
    """Whether a process of this host still runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class PairRecord:
    """A cached pair's attributes (its ``zarr.json``): written by the register task
    (``ingest.pair_task``), read by tiling, packing and the downstream sets (``ingest.packing``).
    Boxes are ``[y0, x0, y1, x1]`` on the registered grid."""

    pair_id: str
    dataset: str
    patient: str
    study: str
    view: str
    registered_side: str          # "left" or "right": the side moved onto the other
    source: dict                  # side -> source image id
    rois: dict                    # side -> [[y0, x0, y1, x1, label], ...]
    quality: dict                 # register.Registration.quality(): dice_after, ncc_after, ...
    transform: dict               # the registration's transform dict (fixed → moving points)
    shape: list                   # [H, W] of the registered grid
    geometry: dict                # side -> normalize.NormalizedImage.meta()
    roi_info: dict = field(default_factory=dict)   # side -> [{"birads", "outcome"}] per ROI
    birads: dict = field(default_factory=dict)     # side -> the breast's BI-RADS
    outcome: str | None = None
    bits: int = 16

    def to_attrs(self) -> dict:
        """JSON values, exactly as ``from_attrs`` reads them back from ``zarr.json``."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_attrs(cls, attrs: dict) -> "PairRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in attrs.items() if k in names})

    def labelled_rois(self, side: str) -> list[dict]:
        """The ROIs of one side with their labels: box, label, BI-RADS and outcome (each ROI's
        own, else the breast's)."""
        infos = self.roi_info.get(side) or [{}] * len(self.rois[side])
        return [{"box": roi[:4], "label": roi[4] if len(roi) > 4 else "",
                 "birads": info.get("birads") or self.birads.get(side),
                 "outcome": info.get("outcome") or self.outcome}
                for roi, info in zip(self.rois[side], infos)]


def digest(value, length: int = 16) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_fingerprint(path) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class PairCache:
    """Registered pairs under ``root/pairs/<params-hash>``; safe to share between processes."""

    def __init__(self, root, params: dict):
        self.params = dict(params)
        self.params_hash = digest({"version": CACHE_VERSION, **self.params})
        self.root = Path(root) / "pairs" / self.params_hash

    @classmethod
    def at(cls, folder) -> "PairCache":
        """The cache whose pairs lie in ``folder`` (``root/pairs/<params-hash>``, as a report
        records it): for reading pairs back without the build's parameters."""
        cache = cls.__new__(cls)
        cache.root = Path(folder)
        cache.params_hash = cache.root.name
        cache.params = {}
        return cache

    # --- names ------------------------------------------------------------------------------

    def entry_name(self, pair_id: str, inputs: dict) -> str:
        return f"{pair_id}-{digest(inputs, 12)}"

    def path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        return (self.path(name) / "zarr.json").is_file()

    # --- writing ----------------------------------------------------------------------------

    def write(self, name: str, pixels: np.ndarray, masks: np.ndarray, attrs: dict) -> Path:
        """Write one pair atomically (temporary group, then rename). Returns its path."""
        import zarr

        final = self.path(name)
        if self.has(name):
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{os.getpid()}-{_HOST}-{uuid.uuid4().hex[:8]}-{name}"
        with publish.publishing(final, tmp=tmp, fsync_dir=False,
                                done_elsewhere=lambda: self.has(name)):
            # Attributes with the group: one metadata write instead of two.
            group = zarr.open_group(str(tmp), mode="w", attributes=json.loads(json.dumps(attrs)))
            data = np.asarray(pixels).astype("uint16", copy=False)
            _, h, w = data.shape
            shard = (2, -(-h // CHUNK) * CHUNK, -(-w // CHUNK) * CHUNK)
            group.create_array("pixels", shape=data.shape, dtype="uint16", chunks=(2, CHUNK, CHUNK),
                               shards=shard, compressors=_compressors())[:] = data
            # The masks are only ever read whole (tiling, downstream patches): one chunk.
            data = np.asarray(masks).astype("uint8", copy=False)
            group.create_array("masks", shape=data.shape, dtype="uint8", chunks=data.shape,
                               compressors=_compressors())[:] = data
        return final

    def write_record(self, name: str, pixels: np.ndarray, masks: np.ndarray,
                     record: PairRecord) -> Path:
        """``write`` with a pair's typed attributes."""
        return self.write(name, pixels, masks, record.to_attrs())

    # --- reading ----------------------------------------------------------------------------

    def open(self, name: str):
        import zarr

        return zarr.open_group(str(self.path(name)), mode="r")

    def attrs(self, name: str) -> dict:
        with open(self.path(name) / "zarr.json") as f:
            return json.load(f).get("attributes", {})

    def record(self, name: str) -> PairRecord:
        return PairRecord.from_attrs(self.attrs(name))

    def read_pair(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(pixels uint16 (2, H, W), masks bool (2, H, W)) of one pair, whole."""
        group = self.open(name)
        return group["pixels"][:], group["masks"][:].astype(bool)

    def read_masks(self, name: str) -> np.ndarray:
        """The breast masks of one pair, bool (2, H, W): all that tiling needs."""
        return self.open(name)["masks"][:].astype(bool)

    def clean_temporary(self, max_age: float = 3600.0) -> int:
        """Remove temporary groups left by killed runs; returns how many.

        A temporary group is stale when the process that wrote it (same host) is gone, or when
        it is older than ``max_age`` seconds (other hosts); a live writer's group is left alone,
        so concurrent builds may share one cache.
        """
        if not self.root.is_dir():
            return 0
        removed = 0
        now = time.time()
        for p in self.root.iterdir():
            if not p.name.startswith(".tmp-"):
                continue
            parts = p.name.split("-", 4)
            try:
                pid, host = int(parts[1]), parts[2]
                age = now - p.stat().st_mtime
            except (IndexError, ValueError, OSError):
                continue
            if (host == _HOST and not _alive(pid)) or age > max_age:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed


class TileReader:
    """Reads tile pairs from cached pairs, keeping recently used arrays open.

    Opening an array reads its metadata (a few ms); a shard's samples come from many pairs in
    random order, so the open arrays (metadata only, no pixels) are kept for the whole task.
    """

    def __init__(self, cache: PairCache, keep: int = 1024):
        self.cache = cache
        self.keep = keep
        self._open: dict[str, object] = {}

    def array(self, name: str):
        arr = self._open.pop(name, None)
        if arr is None:
            arr = self.cache.open(name)["pixels"]
        self._open[name] = arr
        while len(self._open) > self.keep:
            self._open.pop(next(iter(self._open)))
        return arr

    def read(self, name: str, box) -> np.ndarray:
        """uint16 (2, h, w) of the box ``[y0, x0, y1, x1]``: [left, right]."""
        y0, x0, y1, x1 = (int(v) for v in box)
        return np.asarray(self.array(name)[:, y0:y1, x0:x1])
