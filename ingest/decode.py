"""A DICOM's stored pixels, JPEG 2000 decoded at a reduced resolution when the working grid is
far smaller than the image (docs/ingest-pixels.md, "Reduced decode").

A JPEG 2000 codestream is a wavelet pyramid: dropping its ``k`` finest levels gives the image at
``1 / 2**k`` of its size (each side ``ceil(side / 2**k)``) for a fraction of the work (one
4000x3000 image: 0.75 s in full, 0.19 s at half size). ``reduction_level`` picks the largest
``k`` whose image still covers the normalised grid (never upsampled afterwards); every other
transfer syntax, signed or multi-frame data and ``k = 0`` go through ``ds.pixel_array``
unchanged. ``ingest.normalize`` keeps the geometry in the source's pixels (``Rows`` x
``Columns``), whatever the decoded size.
"""
from __future__ import annotations

import io

import numpy as np
from pydicom.uid import JPEG2000, JPEG2000Lossless

from ingest.normalize import fit_shape, mask_shape

J2K_SYNTAXES = (JPEG2000Lossless, JPEG2000)
_SOC, _COD = b"\xff\x4f", 0xFF52


def reduced_shape(shape_hw, level: int) -> tuple[int, int]:
    """The image size after dropping ``level`` wavelet levels (JPEG 2000, image origin 0)."""
    f = 1 << level
    return (-(-int(shape_hw[0]) // f), -(-int(shape_hw[1]) // f))


def decomposition_levels(codestream: bytes) -> int:
    """Number of wavelet levels of a JPEG 2000 codestream (its COD marker); 0 if not found."""
    if codestream[:2] != _SOC:
        return 0
    pos = 2
    while pos + 4 <= len(codestream):
        marker = int.from_bytes(codestream[pos:pos + 2], "big")
        length = int.from_bytes(codestream[pos + 2:pos + 4], "big")
        if marker == _COD:
            # Lcod(2) Scod(1) progression(1) layers(2) MCT(1) then the number of levels.
            return codestream[pos + 9] if pos + 9 < len(codestream) else 0
        if marker >> 8 != 0xFF or length < 2:
            return 0
        pos += 2 + length
    return 0


def reduction_level(source_hw, out_shape, crop: str, max_level: int) -> int:
    """The largest ``k <= max_level`` whose reduced image is at least, in both sides, the
    normalised size of the whole image and the mask's copy (``normalize.mask_shape``); 0 with
    ``crop="breast"`` (the breast's box, unknown before decoding, may need the full
    resolution)."""
    if crop != "none":
        return 0
    # Neither the grid nor the copy the breast mask is found on may be upsampled.
    need = np.maximum(fit_shape(source_hw, out_shape), mask_shape(source_hw))
    level = 0
    while level < max_level:
        h, w = reduced_shape(source_hw, level + 1)
        if h < need[0] or w < need[1]:
            break
        level += 1
    return level


def _frame(ds) -> bytes | None:
    """The one JPEG 2000 codestream of a single-frame unsigned grey image, else None."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax not in J2K_SYNTAXES or "PixelData" not in ds:
        return None
    if (int(ds.get("NumberOfFrames", 1) or 1) != 1 or int(ds.get("SamplesPerPixel", 1)) != 1
            or int(ds.get("PixelRepresentation", 0)) != 0 or int(ds.BitsAllocated) != 16):
        return None   # pydicom's own corrections (sign, colour) are kept for these
    from pydicom.encaps import generate_frames

    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    start = frame.find(_SOC)        # a JP2 wrapper would precede the codestream
    return frame[start:] if start >= 0 else None


def decode_reduced(codestream: bytes, level: int) -> np.ndarray:
    """The codestream decoded without its ``level`` finest wavelet levels (Pillow, OpenJPEG)."""
    from PIL import Image

    with Image.open(io.BytesIO(codestream)) as im:
        if im.mode != "I;16":
            raise ValueError(f"unexpected JPEG 2000 mode {im.mode!r}")
        im.reduce = level
        im.load()
        return np.array(im, dtype=np.uint16)


def stored_pixels(ds, out_shape, *, crop: str = "none", reduced_decode: bool = True) -> np.ndarray:
    """``ds``'s stored values: ``ds.pixel_array``, or a JPEG 2000 image decoded at the reduced
    resolution ``reduction_level`` allows (its shape then smaller than ``Rows`` x ``Columns``)."""
    frame = _frame(ds) if reduced_decode else None
    if frame is not None:
        source = (int(ds.Rows), int(ds.Columns))
        level = reduction_level(source, out_shape, crop, decomposition_levels(frame))
        if level:
            try:
                pixels = decode_reduced(frame, level)
            except (OSError, ValueError):   # Pillow cannot: pydicom's decoders, in full
                return ds.pixel_array
            if pixels.shape != reduced_shape(source, level):
                raise ValueError(f"JPEG 2000 image of {pixels.shape} at level {level}, "
                                 f"expected {reduced_shape(source, level)}")
            return pixels
    return ds.pixel_array
