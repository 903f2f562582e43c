"""The pixel formats of shard images: one registry, ``CODECS``, that the schema and both loader
backends read. A format is a name, the extension of its sample fields, a CPU encoder and decoder
of one 2-D uint16 image, and how DALI's pipeline gets its pixels (``dali``):

* ``"image"``: ``fn.decoders.image`` (nvImageCodec) decodes it; ``gpu`` says whether that decoder
  runs on the GPU (``device="mixed"``) or on the CPU only;
* ``"pixels"``: the reader hands over the uint16 pixels themselves (nothing to decode);
* ``"python"``: DALI has no decoder for it; the pipeline calls the codec's ``decode``.

Adding a format: one ``Codec`` here, and nothing else unless DALI needs a new way in.
Every codec is lossless and bit-exact for any uint16 image (12 to 16 significant bits alike).
Decoders check the stored header against the expected size before decoding (a small stream
claiming a huge image costs nothing) and raise ``CodecError`` on any failure.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

# PNG compression: level 1 is several times faster to write than 6 and only a few percent larger
# on noisy 16-bit tissue; reading speed does not depend on it.
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY = 0     # IHDR colour type of grayscale without alpha
# blosc2: bit-shuffle groups the bit planes of the 16-bit pixels (the high ones are near-constant
# on 12 to 14 significant bits), zstd then compresses them; level 5 is 1% smaller than level 1
# (just under PNG's size on pipeline patches), decodes as fast and still encodes 9x faster than PNG
BLOSC2_LEVEL = 5
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"   # a JPEG 2000 codestream starts with SOC then SIZ


class CodecError(ValueError):
    """Bytes that are not a valid image of the expected format and size."""


@dataclass(frozen=True)
class Codec:
    name: str
    ext: str                                          # sample field extension
    encode: Callable[[np.ndarray], bytes]             # 2-D uint16 -> bytes
    decode: Callable[..., np.ndarray]                 # (bytes, size) -> uint16 [size, size]
    dali: str                                         # "image", "pixels" or "python"
    gpu: bool = False                                 # DALI decodes it on the GPU
    decode_into: Callable | None = None               # (bytes, out uint16 [S, S]) in place


def _uint16_2d(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint16 or image.ndim != 2:
        raise CodecError(f"image must be a 2-D uint16 array, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _check_side(width: int, height: int, size: int | None, what: str) -> None:
    if size is not None and (width, height) != (int(size), int(size)):
        raise CodecError(f"{what} header says {width}x{height}, metadata says size {size}")


# --- png -----------------------------------------------------------------------------------

def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_uint16_2d(image)).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def png_header(data) -> tuple[int, int, int, int]:
    """``(width, height, bit depth, colour type)`` from a PNG's IHDR chunk, read without
    decoding anything (the header is the first 33 bytes)."""
    head = bytes(data[:33])
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise CodecError("undecodable PNG: no PNG signature and IHDR header")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    return width, height, depth, colour


def check_png_header(data, size: int | None) -> None:
    """Refuse a PNG whose header is not 16-bit grayscale of ``size`` x ``size`` before any pixel
    is decoded: a header claiming 60000 x 60000, or a small zlib stream that inflates to
    9000 x 9000, must cost nothing."""
    width, height, depth, colour = png_header(data)
    if depth != 16 or colour != PNG_GRAY:
        raise CodecError(f"PNG header says bit depth {depth}, colour type {colour}; expected "
                         f"16-bit grayscale (16, {PNG_GRAY})")
    _check_side(width, height, size, "PNG")


def decode_png(data, size: int | None = None) -> np.ndarray:
    from PIL import Image

    check_png_header(data, size)
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.mode not in ("I;16", "I;16B", "I;16L"):
                raise CodecError(f"PNG is {img.mode}, expected 16-bit grayscale")
            return np.asarray(img, dtype=np.uint16)
    except CodecError:
        raise
    except Exception as exc:   # noqa: BLE001 - Pillow raises many kinds (OSError, ValueError,
        # DecompressionBombError, SyntaxError, zlib.error...): all mean unreadable bytes
        raise CodecError(f"undecodable PNG ({type(exc).__name__}: {exc})") from None


# --- raw -----------------------------------------------------------------------------------

def encode_raw(image: np.ndarray) -> bytes:
    return _uint16_2d(image).astype("<u2", copy=False).tobytes()


def decode_raw(data, size: int) -> np.ndarray:
    expected = int(size) * int(size) * 2
    if len(data) != expected:
        raise CodecError(f"raw patch has {len(data)} bytes, expected {expected} for "
                         f"({size}, {size})")
    return np.frombuffer(data, dtype="<u2").reshape(size, size).astype(np.uint16, copy=False)


# --- htj2k ---------------------------------------------------------------------------------

def encode_htj2k(image: np.ndarray) -> bytes:
    """A JPEG 2000 codestream with HT code-blocks (OpenJPH), reversible 5/3 wavelet: lossless.
    Always 16-bit precision, whatever the significant bits: decoders asked for uint16 then
    return the stored values (a 12-bit codestream may be scaled up to 16 bits by some)."""
    import imagecodecs

    return bytes(imagecodecs.htj2k_encode(_uint16_2d(image), reversible=True))


def j2k_header(data) -> tuple[int, int, int, int]:
    """``(width, height, components, bit depth)`` from a JPEG 2000 codestream's SIZ marker."""
    head = bytes(data[:43])
    if len(head) < 43 or head[:4] != J2K_SOC_SIZ:
        raise CodecError("undecodable HTJ2K: no JPEG 2000 codestream header (SOC, SIZ)")
    xsiz, ysiz, x0, y0 = struct.unpack(">IIII", head[8:24])
    (components,) = struct.unpack(">H", head[40:42])
    depth = (head[42] & 0x7F) + 1   # Ssiz of the first component
    return xsiz - x0, ysiz - y0, components, depth


def decode_htj2k(data, size: int | None = None) -> np.ndarray:
    import imagecodecs

    width, height, components, depth = j2k_header(data)
    if components != 1 or depth != 16:
        raise CodecError(f"HTJ2K header says {components} components of {depth} bits; "
                         "expected one 16-bit component")
    _check_side(width, height, size, "HTJ2K")
    try:
        image = imagecodecs.htj2k_decode(bytes(data))
    except Exception as exc:   # noqa: BLE001 - any decoder failure means unreadable bytes
        raise CodecError(f"undecodable HTJ2K ({type(exc).__name__}: {exc})") from None
    if image.dtype != np.uint16 or image.shape != (width, height)[::-1]:
        raise CodecError(f"HTJ2K decoded to {image.dtype} {image.shape}")
    return image


# --- blosc2 --------------------------------------------------------------------------------

def encode_blosc2(image: np.ndarray) -> bytes:
    import imagecodecs

    return bytes(imagecodecs.blosc2_encode(_uint16_2d(image), level=BLOSC2_LEVEL,
                                           compressor="zstd", shuffle="bitshuffle",
                                           typesize=2, numthreads=1))


def blosc2_decode_into(data, out: np.ndarray) -> None:
    """Decompress straight into ``out`` (a C-contiguous uint16 image): a chunk whose size
    differs from ``out``'s is refused by blosc2 before any byte is written past it."""
    import imagecodecs

    if len(data) < 16:
        raise CodecError("undecodable blosc2: shorter than a chunk header")
    (nbytes,) = struct.unpack("<I", bytes(data[4:8]))   # the chunk header's uncompressed size
    if nbytes != out.nbytes:
        raise CodecError(f"blosc2 chunk holds {nbytes} bytes, expected {out.nbytes} for "
                         f"{out.shape}")
    try:
        imagecodecs.blosc2_decode(data, numthreads=1, out=out.view(np.uint8).reshape(-1))
    except Exception as exc:   # noqa: BLE001 - any decoder failure means unreadable bytes
        raise CodecError(f"undecodable blosc2 ({type(exc).__name__}: {exc})") from None


def decode_blosc2(data, size: int) -> np.ndarray:
    out = np.empty((int(size), int(size)), np.uint16)
    blosc2_decode_into(data, out)
    return out


CODECS: dict[str, Codec] = {c.name: c for c in (
    Codec("png", "png", encode_png, decode_png, dali="image", gpu=False),
    Codec("raw", "u16", encode_raw, decode_raw, dali="pixels"),
    Codec("htj2k", "j2c", encode_htj2k, decode_htj2k, dali="image", gpu=True),
    Codec("blosc2", "b2", encode_blosc2, decode_blosc2, dali="python",
          decode_into=blosc2_decode_into),
)}
# the format ``ingest build-shards`` and ``build-downstream`` write unless told (docs/shards.md:
# no larger than PNG, and the fastest to read on the CPU by 3x)
DEFAULT_FORMAT = "blosc2"


def codec(name: str) -> Codec:
    if name not in CODECS:
        raise CodecError(f"unknown pixel format {name!r}; expected one of {tuple(CODECS)}")
    return CODECS[name]
