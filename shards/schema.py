"""The sample schema: the one place that encodes and decodes a shard sample.

A sample is a webdataset dict ``{"__key__": str, "<field>": bytes}``. Pixels are uint16 from end to
end, stored in one of the pixel formats of ``codecs.CODECS`` (``fmt``: 16-bit grayscale PNG, raw
little-endian uint16, lossless HTJ2K, blosc2), whose shape comes from the metadata. WebDataset's
own image decoders squash 16 bits to 8, so readers decode here.

Two kinds of sample:

* ``pair``: ``left.<ext>``, ``right.<ext>`` and ``json`` (metadata built by ``pair_meta``);
* ``patch``: ``<ext>`` and ``json`` (metadata built by ``patch_meta``);

where ``<ext>`` is the format's extension (``EXTENSIONS``); ``image_fields`` names them. Readers decode
one sample with ``decode`` (or ``decode_pair`` / ``decode_patch``) and a batch of them straight
into one array with ``decode_batch``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from shards import codecs

FORMAT_VERSION = 1
PIXEL_FORMATS = tuple(codecs.CODECS)
EXTENSIONS = {name: c.ext for name, c in codecs.CODECS.items()}
DEFAULT_FORMAT = codecs.DEFAULT_FORMAT   # what the build commands write unless told
SPLITS = ("train", "val", "test")
KINDS = ("pair", "patch")
PAIR_SIDES = ("left", "right")
META_FIELD = "json"
# what comes before the extension in a kind's image field names, one entry per image
_IMAGE_PREFIXES = {"pair": tuple(f"{side}." for side in PAIR_SIDES), "patch": ("",)}
# figures (background and abnormal-area fractions) are stored to this many decimals
FIGURE_DECIMALS = 6

PAIR_REQUIRED = ("kind", "size", "bits", "dataset", "patient", "study", "view", "row", "col",
                 "box", "background", "area", "split")
PATCH_REQUIRED = ("kind", "size", "bits", "task", "label", "split")
_REQUIRED = {"pair": PAIR_REQUIRED, "patch": PATCH_REQUIRED}

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class SchemaError(ValueError):
    """A sample that does not follow the schema; the message names the shard and the key."""


@dataclass(frozen=True)
class PairSample:
    key: str
    left: np.ndarray
    right: np.ndarray
    meta: dict

    @property
    def images(self) -> tuple[np.ndarray, ...]:
        """The images in ``image_fields`` order."""
        return self.left, self.right


@dataclass(frozen=True)
class PatchSample:
    key: str
    image: np.ndarray
    meta: dict

    @property
    def images(self) -> tuple[np.ndarray, ...]:
        return (self.image,)


@dataclass(frozen=True)
class DecodedBatch:
    """Samples of one kind decoded into one uint16 array ``pixels`` ``[B, C, S, S]``."""
    pixels: np.ndarray
    metas: list
    keys: list
    text: bytes | None   # ``metas`` as the JSON array they were parsed from (None if not)


def image_fields(kind: str, fmt: str) -> tuple[str, ...]:
    """The image field names of a sample: ``("left.png", "right.png")`` for a pair, ``("u16",)``
    for a raw patch."""
    if kind not in _IMAGE_PREFIXES:
        raise SchemaError(f"unknown sample kind {kind!r}; expected one of {KINDS}")
    ext = _extension(fmt)
    return tuple(prefix + ext for prefix in _IMAGE_PREFIXES[kind])


# --- metadata ------------------------------------------------------------------------------

def box_of(y0: int, x0: int, size: int) -> list[int]:
    """``[y0, x0, y1, x1]`` of a ``size`` patch cut at ``(y0, x0)``."""
    y0, x0, size = int(y0), int(x0), int(size)
    return [y0, x0, y0 + size, x0 + size]


def pair_meta(*, size: int, bits: int, dataset: str, patient: str, study: str, view: str,
              row: int, col: int, y0: int, x0: int, background: tuple[float, float],
              area: tuple[float, float, float], split: str, **provenance) -> dict:
    """A pair sample's metadata: the grid position ``row``, ``col`` and the box at ``(y0, x0)``,
    background fractions ``(left, right)``, abnormal-area fractions ``(left, right, pair)``.

    ``provenance``: what else the build records (``rois``, ``registered_side``, ``source``...),
    stored as given."""
    meta = {"kind": "pair", "size": int(size), "bits": int(bits), "dataset": dataset,
            "patient": patient, "study": study, "view": view, "row": int(row), "col": int(col),
            "box": box_of(y0, x0, size),
            "background": _figures(PAIR_SIDES, background),
            "area": _figures(PAIR_SIDES + ("pair",), area), "split": split}
    return _with_provenance(meta, provenance)


def patch_meta(*, size: int, bits: int, task: str, label: int, split: str,
               y0: int | None = None, x0: int | None = None, **provenance) -> dict:
    """A labelled patch's metadata; ``box`` when cut at ``(y0, x0)``. ``provenance``: what else
    the build records (``label_name``, ``dataset``, ``side``, ``roi``...), stored as given."""
    meta = {"kind": "patch", "size": int(size), "bits": int(bits), "task": task,
            "label": int(label), "split": split}
    if y0 is not None or x0 is not None:
        meta["box"] = box_of(y0, x0, size)
    return _with_provenance(meta, provenance)


def _figures(names: tuple, values) -> dict:
    values = tuple(values)
    if len(values) != len(names):
        raise SchemaError(f"expected {len(names)} figures ({', '.join(names)}), got {values}")
    return {name: round(float(v), FIGURE_DECIMALS) for name, v in zip(names, values)}


def _with_provenance(meta: dict, provenance: dict) -> dict:
    clash = sorted(set(meta) & set(provenance))
    if clash:
        raise SchemaError(f"metadata fields {', '.join(clash)} are set by the schema")
    meta.update(provenance)
    return meta


def make_key(*parts) -> str:
    """Join parts with ``_``; anything outside ``[A-Za-z0-9_-]`` (dots above all) becomes ``-``."""
    key = "_".join(_KEY_UNSAFE.sub("-", str(p)) for p in parts)
    if not key:
        raise SchemaError("empty sample key")
    return key


def _codec(fmt: str) -> codecs.Codec:
    try:
        return codecs.codec(fmt)
    except codecs.CodecError as exc:
        raise SchemaError(str(exc)) from None


def encode_image(image: np.ndarray, fmt: str) -> bytes:
    """One uint16 image in pixel format ``fmt`` (a name in ``codecs.CODECS``)."""
    return _codec(fmt).encode(_check_uint16_2d(image, "image"))


def decode_image(data, fmt: str, size: int) -> np.ndarray:
    """One stored image of pixel format ``fmt`` as a ``size`` x ``size`` uint16 array; the
    header is checked against ``size`` first and any decoder error becomes a ``SchemaError``."""
    try:
        return _codec(fmt).decode(data, int(size))
    except codecs.CodecError as exc:
        raise SchemaError(str(exc)) from None


def encode_pair(key: str, left: np.ndarray, right: np.ndarray, meta: dict,
                fmt: str = "png") -> dict:
    fields = image_fields("pair", fmt)
    _check_key(key)
    meta = {**meta, "kind": "pair"}
    _check_fields(meta, PAIR_REQUIRED, key)
    for side, image in zip(PAIR_SIDES, (left, right)):
        _check_shape(_check_uint16_2d(image, side), meta["size"], key, side)
    encode = _codec(fmt).encode
    return {"__key__": key, fields[0]: encode(left), fields[1]: encode(right),
            META_FIELD: _dump(meta)}


def decode_pair(sample: dict, where: str = "", size: int | None = None) -> PairSample:
    """A pair sample decoded and checked; ``size``: the patch side the reader expects (a
    sample whose metadata says otherwise is refused before any decoding)."""
    key, meta = _checked_meta(sample, "pair", where, size)
    left, right = (_decode_image(sample, prefix, meta, key, where)
                   for prefix in _IMAGE_PREFIXES["pair"])
    return PairSample(key, left, right, meta)


def encode_patch(key: str, image: np.ndarray, meta: dict, fmt: str = "png") -> dict:
    (field,) = image_fields("patch", fmt)
    _check_key(key)
    meta = {**meta, "kind": "patch"}
    _check_fields(meta, PATCH_REQUIRED, key)
    _check_shape(_check_uint16_2d(image, "image"), meta["size"], key, "image")
    return {"__key__": key, field: _codec(fmt).encode(image), META_FIELD: _dump(meta)}


def decode_patch(sample: dict, where: str = "", size: int | None = None) -> PatchSample:
    key, meta = _checked_meta(sample, "patch", where, size)
    return PatchSample(key, _decode_image(sample, _IMAGE_PREFIXES["patch"][0], meta, key, where),
                       meta)


def decode(sample: dict, where: str = "", kind: str | None = None,
           size: int | None = None) -> PairSample | PatchSample:
    """``decode_pair`` or ``decode_patch``: by ``kind``, or else by the sample's own metadata
    (anything that does not say ``patch`` is checked as a pair); ``size``: the expected patch
    side, if known."""
    if kind is None:
        kind = "patch" if _peek_kind(sample) == "patch" else "pair"
    if kind not in KINDS:
        raise SchemaError(f"unknown sample kind {kind!r}; expected one of {KINDS}")
    return (decode_patch(sample, where, size) if kind == "patch"
            else decode_pair(sample, where, size))


def sample_format(sample: dict) -> str:
    """The pixel format (a name in ``PIXEL_FORMATS``), from the field names of an encoded
    sample."""
    for name in sample:
        for fmt, ext in EXTENSIONS.items():
            if name == ext or name.endswith("." + ext):
                return fmt
    raise SchemaError(f"{sample.get('__key__', '?')}: no image field in {sorted(sample)}")


def sample_kind(sample: dict) -> str:
    """'pair' or 'patch', from the field names of an encoded sample."""
    pair = set(image_fields("pair", sample_format(sample)))
    return "pair" if pair <= set(sample) else "patch"


def parse_metas(fields: list) -> tuple[list, bytes]:
    """``(metas, text)``: the metadata of many samples from one ``json.loads`` of ``text``, their
    ``json`` fields (bytes-like; trailing blanks allowed) joined into one JSON array."""
    text = b"[" + b",".join(fields) + b"]"
    metas = json.loads(text)
    if not isinstance(metas, list) or len(metas) != len(fields):
        raise ValueError(f"{len(fields)} json fields parsed into {len(metas)} values")
    return metas, text


def decode_batch(kind: str, samples: list, images: list | None = None, alloc=None,
                 size: int | None = None) -> DecodedBatch:
    """Samples of one ``kind`` decoded straight into one uint16 batch array.

    ``images``: per sample, which of its images (indices into ``image_fields``) become its
    channels; default all of them. ``alloc(shape)``: where the pixels go (a numpy array, e.g. a
    worker's shared output slot); default new memory. ``size``: the patch side the batch must
    have (the shard set's, from its manifest); default the first sample's.

    The batch's JSON is parsed in one call and raw pixels are copied from the read buffer into
    the batch once. A sample that does not meet the schema on this path (unreadable JSON, a
    missing field, a wrong kind, size or byte count, an undecodable PNG) goes through ``decode``,
    whose error names the shard (``sample["__where__"]``) and the sample.
    """
    if kind not in KINDS:
        raise SchemaError(f"unknown sample kind {kind!r}; expected one of {KINDS}")
    prefixes, required = _IMAGE_PREFIXES[kind], _REQUIRED[kind]
    if images is None:
        images = [tuple(range(len(prefixes)))] * len(samples)
    try:
        metas, text = parse_metas([sample[META_FIELD] for sample in samples])
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        metas, text = None, None
    size = int(size) if size is not None else _batch_size_px(kind, metas, samples)
    shape = (len(samples), len(images[0]) if images else 0, size, size)
    pixels = np.empty(shape, np.uint16) if alloc is None else alloc(shape)
    for i, (sample, wanted) in enumerate(zip(samples, images)):
        meta = metas[i] if metas is not None else None
        if not (isinstance(meta, dict) and meta.get("kind") == kind
                and all(f in meta for f in required) and meta["size"] == size
                and all(_decode_into(sample, prefixes[w], size, pixels[i, c])
                        for c, w in enumerate(wanted))):
            decoded = decode(sample, sample.get("__where__", ""), kind, size)
            for c, w in enumerate(wanted):
                pixels[i, c] = decoded.images[w]
            if metas is None:
                metas = [None] * len(samples)
            metas[i], text = decoded.meta, None
    return DecodedBatch(pixels, metas if metas is not None else [],
                        [sample.get("__key__", "?") for sample in samples], text)


# --- helpers -------------------------------------------------------------------------------

def _extension(fmt: str) -> str:
    if fmt not in EXTENSIONS:
        raise SchemaError(f"unknown pixel format {fmt!r}; expected one of {PIXEL_FORMATS}")
    return EXTENSIONS[fmt]


def _at(where: str, key: str, reason: str) -> str:
    return f"{where}: {key}: {reason}" if where else f"{key}: {reason}"


def _check_key(key: str) -> None:
    if not key or "." in key or _KEY_UNSAFE.search(key):
        raise SchemaError(f"invalid sample key {key!r}: use make_key() (no dots)")


def _check_fields(meta: dict, required: tuple, key: str, where: str = "") -> None:
    missing = [f for f in required if f not in meta]
    if missing:
        raise SchemaError(_at(where, key, f"metadata lacks {', '.join(missing)}"))


def _check_uint16_2d(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint16 or image.ndim != 2:
        raise SchemaError(f"{name} must be a 2-D uint16 array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _check_shape(image: np.ndarray, size: int, key: str, name: str, where: str = "") -> None:
    if image.shape != (int(size), int(size)):
        raise SchemaError(_at(where, key, f"{name} is {image.shape}, metadata says size {size}"))


def _dump(meta: dict) -> bytes:
    return json.dumps(meta, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _checked_meta(sample: dict, kind: str, where: str, size: int | None = None
                  ) -> tuple[str, dict]:
    """The sample's key and metadata, which must hold the kind's required fields and, when
    ``size`` is given, say that size (checked before any pixel is decoded)."""
    key = sample.get("__key__", "?")
    meta = _load_meta(sample, key, where)
    if not isinstance(meta, dict):
        raise SchemaError(_at(where, key, f"json is a {type(meta).__name__}, not an object"))
    _check_fields(meta, _REQUIRED[kind], key, where)
    if meta["kind"] != kind:
        raise SchemaError(_at(where, key, f"kind is {meta['kind']!r}, expected {kind!r}"))
    stated = meta["size"]
    if not isinstance(stated, int) or isinstance(stated, bool) or stated < 1:
        raise SchemaError(_at(where, key, f"size {stated!r} is not a positive integer"))
    if size is not None and stated != int(size):
        raise SchemaError(_at(where, key, f"size {stated}, the shard set's patches are {size}"))
    return key, meta


def _load_meta(sample: dict, key: str, where: str) -> dict:
    raw = sample.get(META_FIELD)
    if raw is None:
        raise SchemaError(_at(where, key, "no json field"))
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(_at(where, key, f"unreadable json ({exc})")) from None


def _peek_kind(sample: dict):
    try:
        return json.loads(sample.get(META_FIELD, b"{}")).get("kind")
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        return None


def _image_data(sample: dict, prefix: str):
    """``(pixel format, bytes)`` of one stored image; None when the sample has neither field."""
    for fmt, ext in EXTENSIONS.items():
        data = sample.get(prefix + ext)
        if data is not None:
            return fmt, data
    return None


def _decode_into(sample: dict, prefix: str, size: int, out: np.ndarray) -> bool:
    """Decode one stored image into ``out``; False when it is missing, unreadable or not
    ``size`` (the caller then goes through ``decode``, which says what is wrong)."""
    found = _image_data(sample, prefix)
    if found is None:
        return False
    into = codecs.CODECS[found[0]].decode_into
    if into is not None and out.flags.c_contiguous:   # no temporary image
        try:
            into(found[1], out)
            return True
        except Exception:   # noqa: BLE001 - ``decode`` reports it with the sample's name
            return False
    try:
        image = decode_image(found[1], found[0], size)
    except Exception:   # noqa: BLE001 - ``decode`` reports it with the sample's name
        return False
    if image.shape != (size, size):
        return False
    out[...] = image
    return True


def _batch_size_px(kind: str, metas, samples) -> int:
    meta = metas[0] if metas else None
    if isinstance(meta, dict) and isinstance(meta.get("size"), int):
        return meta["size"]
    if not samples:
        return 0
    return decode(samples[0], samples[0].get("__where__", ""), kind).images[0].shape[0]


def _decode_image(sample: dict, prefix: str, meta: dict, key: str, where: str) -> np.ndarray:
    name = prefix.rstrip(".") or "image"
    try:
        size = int(meta["size"])
        found = _image_data(sample, prefix)
        if found is None:
            raise SchemaError(f"no {' or '.join(prefix + e for e in EXTENSIONS.values())} field")
        image = decode_image(found[1], found[0], size)
    except SchemaError as exc:
        raise SchemaError(_at(where, key, f"{name}: {exc}")) from None
    except Exception as exc:   # noqa: BLE001 - any decoder failure is the sample's fault
        raise SchemaError(_at(where, key, f"{name}: undecodable ({type(exc).__name__}: "
                                          f"{exc})")) from None
    _check_shape(image, size, key, prefix.rstrip(".") or "image", where)
    return image
