"""The sample schema: the one place that encodes and decodes a shard sample.

A sample is a webdataset dict ``{"__key__": str, "<field>": bytes}``. Pixels are uint16 from end to
end: 16-bit grayscale PNG by default, or raw little-endian uint16 (``fmt="raw"``) whose shape comes
from the metadata. WebDataset's own image decoders squash 16 bits to 8, so readers decode here.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

FORMAT_VERSION = 1
PIXEL_FORMATS = ("png", "raw")
EXTENSIONS = {"png": "png", "raw": "u16"}
SPLITS = ("train", "val", "test")

PAIR_REQUIRED = ("kind", "size", "bits", "dataset", "patient", "study", "view", "row", "col",
                 "box", "background", "area", "split")
PATCH_REQUIRED = ("kind", "size", "bits", "task", "label", "split")

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# PNG compression: level 1 is several times faster to write than 6 and only a few percent larger
# on noisy 16-bit tissue; reading speed does not depend on it.
PNG_COMPRESS_LEVEL = 1


class SchemaError(ValueError):
    """A sample that does not follow the schema; the message names the shard and the key."""


@dataclass(frozen=True)
class PairSample:
    key: str
    left: np.ndarray
    right: np.ndarray
    meta: dict


@dataclass(frozen=True)
class PatchSample:
    key: str
    image: np.ndarray
    meta: dict


def make_key(*parts) -> str:
    """Join parts with ``_``; anything outside ``[A-Za-z0-9_-]`` (dots above all) becomes ``-``."""
    key = "_".join(_KEY_UNSAFE.sub("-", str(p)) for p in parts)
    if not key:
        raise SchemaError("empty sample key")
    return key


def encode_png16(image: np.ndarray) -> bytes:
    image = _check_uint16_2d(image, "image")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def decode_png16(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in ("I;16", "I;16B", "I;16L"):
            raise SchemaError(f"PNG is {img.mode}, expected 16-bit grayscale")
        return np.asarray(img, dtype=np.uint16)


def encode_raw16(image: np.ndarray) -> bytes:
    return _check_uint16_2d(image, "image").astype("<u2", copy=False).tobytes()


def decode_raw16(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    expected = int(shape[0]) * int(shape[1]) * 2
    if len(data) != expected:
        raise SchemaError(f"raw patch has {len(data)} bytes, expected {expected} for {shape}")
    return np.frombuffer(data, dtype="<u2").reshape(shape).astype(np.uint16, copy=False)


def encode_pair(key: str, left: np.ndarray, right: np.ndarray, meta: dict, fmt: str = "png") -> dict:
    ext = _extension(fmt)
    _check_key(key)
    meta = {**meta, "kind": "pair"}
    _check_fields(meta, PAIR_REQUIRED, key)
    for side, image in (("left", left), ("right", right)):
        _check_shape(_check_uint16_2d(image, side), meta["size"], key, side)
    encode = encode_png16 if fmt == "png" else encode_raw16
    return {"__key__": key, f"left.{ext}": encode(left), f"right.{ext}": encode(right),
            "json": _dump(meta)}


def decode_pair(sample: dict, where: str = "") -> PairSample:
    key = sample.get("__key__", "?")
    meta = _load_meta(sample, key, where)
    _check_fields(meta, PAIR_REQUIRED, key, where)
    if meta["kind"] != "pair":
        raise SchemaError(_at(where, key, f"kind is {meta['kind']!r}, expected 'pair'"))
    left = _decode_image(sample, "left.", meta, key, where)
    right = _decode_image(sample, "right.", meta, key, where)
    return PairSample(key, left, right, meta)


def encode_patch(key: str, image: np.ndarray, meta: dict, fmt: str = "png") -> dict:
    ext = _extension(fmt)
    _check_key(key)
    meta = {**meta, "kind": "patch"}
    _check_fields(meta, PATCH_REQUIRED, key)
    _check_shape(_check_uint16_2d(image, "image"), meta["size"], key, "image")
    encode = encode_png16 if fmt == "png" else encode_raw16
    return {"__key__": key, ext: encode(image), "json": _dump(meta)}


def decode_patch(sample: dict, where: str = "") -> PatchSample:
    key = sample.get("__key__", "?")
    meta = _load_meta(sample, key, where)
    _check_fields(meta, PATCH_REQUIRED, key, where)
    if meta["kind"] != "patch":
        raise SchemaError(_at(where, key, f"kind is {meta['kind']!r}, expected 'patch'"))
    return PatchSample(key, _decode_image(sample, "", meta, key, where), meta)


def sample_format(sample: dict) -> str:
    """'png' or 'raw', from the field names of an encoded sample."""
    for name in sample:
        if name.endswith(".u16") or name == "u16":
            return "raw"
        if name.endswith(".png") or name == "png":
            return "png"
    raise SchemaError(f"{sample.get('__key__', '?')}: no image field in {sorted(sample)}")


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


def _load_meta(sample: dict, key: str, where: str) -> dict:
    raw = sample.get("json")
    if raw is None:
        raise SchemaError(_at(where, key, "no json field"))
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError(_at(where, key, f"unreadable json ({exc})")) from None


def _decode_image(sample: dict, prefix: str, meta: dict, key: str, where: str) -> np.ndarray:
    size = int(meta["size"])
    try:
        if prefix + "png" in sample:
            image = decode_png16(sample[prefix + "png"])
        elif prefix + "u16" in sample:
            image = decode_raw16(sample[prefix + "u16"], (size, size))
        else:
            raise SchemaError(f"no {prefix}png or {prefix}u16 field")
    except SchemaError as exc:
        raise SchemaError(_at(where, key, str(exc))) from None
    except (OSError, ValueError) as exc:  # PIL raises these for corrupt PNG bytes
        raise SchemaError(_at(where, key, f"undecodable {prefix}png ({exc})")) from None
    _check_shape(image, size, key, prefix.rstrip(".") or "image", where)
    return image
