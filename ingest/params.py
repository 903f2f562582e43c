"""The build's parameters: one frozen dataclass per stage, each default written once, here.

What a build records is ``dataclasses.asdict`` of these, so a changed default changes the keys
with it: ``PairParams`` is the key of the registered-pair cache (what changes the registered
pixels; the patch size is not in it, so ``--size 96`` and ``--size 256`` share one
registration), ``PairSetParams`` and ``PatchSetParams`` are the manifest's ``params`` (what
changes the shards' bytes: no paths, no worker counts). ``normalize.normalize_dataset``,
``register.register_pair``, ``register.passes_quality``, ``ingest.config.BuildConfig`` and the
``ingest build-*`` flags read their defaults from these classes.

This module imports nothing from the project, so any module may use it.
"""
from __future__ import annotations

from dataclasses import dataclass

from shards.codecs import DEFAULT_FORMAT


@dataclass(frozen=True)
class NormalizeParams:
    """The DICOM → uint16 policies of ``ingest.normalize`` (docs/ingest-pixels.md)."""

    voi: str = "auto"       # "auto": the file's window or VOI LUT; "none": modality values
    crop: str = "none"      # "none": the whole image; "breast": the breast's bounding box
    # JPEG 2000 decoded at the smallest wavelet level still covering the grid (ingest.decode)
    reduced_decode: bool = True


@dataclass(frozen=True)
class RegisterParams:
    """``register.register_pair``'s settings (its docstring says what each one does); the
    defaults were chosen with ``python -m ingest.register_bench``. ``initial`` (a transform dict
    to start from) is ``None`` in a build: the centres of mass of the masks."""

    transform: str = "similarity"
    shrink: tuple = (16, 8)
    sampling: float = 1.0
    iterations: int = 200
    bins: int = 32
    learning_rate: float = 1.0
    min_step: float = 1e-4
    seed: int = 0
    metric_margin: float = 0.08
    band: tuple | None = (12.0, 60.0)
    metric: str = "correlation"
    band_refine: int = 1
    coarse_min_step: float = 1e-2   # the first pass's, when a band refinement follows
    fixed_crop: int = 8             # fixed image cut to the metric mask + 8 coarse pixels
    initial: dict | None = None


@dataclass(frozen=True)
class QualityParams:
    """Least registration quality of a pair that is used (``register.passes_quality``)."""

    dice_after: float = 0.85    # Dice of the two breast masks, alignment kept
    ncc_after: float = 0.3      # correlation of the two images over the breasts, alignment kept


@dataclass(frozen=True)
class PairParams:
    """What changes a registered pair's pixels: the cache key (``ingest.cache.PairCache``).

    ``out_shape`` is the grid both sides are normalised onto and registered on."""

    out_shape: tuple = (1152, 896)
    registration: RegisterParams = RegisterParams()
    normalize: NormalizeParams = NormalizeParams()


@dataclass(frozen=True)
class TileParams:
    """The grid and the rules of ``ingest.tiling`` (the keyword arguments of
    ``packing.tile_rows``); ``stride`` None is ``size``: no overlap."""

    size: int = 96
    stride: int | None = None
    max_background: float = 0.5
    max_border_xor: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "stride", int(self.stride or self.size))


@dataclass(frozen=True)
class ShardParams:
    """How the shards are cut and encoded."""

    format: str = DEFAULT_FORMAT   # a name in shards.codecs.CODECS
    seed: int = 0               # seed of the splits and of the shuffle
    shard_size: int = 1000      # samples per shard
    splits: tuple = (8, 1, 1)   # train:val:test ratios (patients, or patches downstream)


@dataclass(frozen=True)
class SetParams:
    """The manifest's ``params`` shared by both kinds of shard set. ``patients``,
    ``image_size`` and ``lesion_fraction`` are the synthetic generator's (None for other
    datasets)."""

    dataset: str
    size: int
    format: str
    seed: int
    shard_size: int
    splits: tuple
    max_background: float
    quality: QualityParams
    out_shape: tuple
    registration: RegisterParams
    normalize: NormalizeParams
    patients: int | None
    image_size: tuple | None
    lesion_fraction: float | None


@dataclass(frozen=True)
class PairSetParams(SetParams):
    """The manifest's ``params`` of ``ingest build-shards``."""

    stride: int
    max_border_xor: float


@dataclass(frozen=True)
class PatchSetParams(SetParams):
    """The manifest's ``params`` of ``ingest build-downstream``."""

    task: str
