"""The configuration of one ``ingest build-shards`` / ``build-downstream`` run.

``BuildConfig`` holds what a run is given (paths, dataset, parameters, execution); its
``*_params`` methods hand out the frozen parameter records of ``ingest.params``, whose
``asdict`` is what the run records (the cache key, the manifest's ``params``). Its defaults
are read from those records, so each exists once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ingest.params import (NormalizeParams, PairParams, PairSetParams, PatchSetParams,
                           QualityParams, RegisterParams, ShardParams, TileParams)


@dataclass
class BuildConfig:
    dataset: str
    out: str
    size: int = TileParams.size
    root: str | None = None
    manifest_csv: str | None = None
    stride: int | None = TileParams.stride
    fmt: str = ShardParams.format
    seed: int = ShardParams.seed
    shard_size: int = ShardParams.shard_size
    splits: tuple = ShardParams.splits
    max_background: float = TileParams.max_background
    max_border_xor: float = TileParams.max_border_xor
    out_shape: tuple = PairParams.out_shape
    quality: dict = field(default_factory=dict)      # QualityParams overrides, e.g. {"dice_after": 0.9}
    registration: RegisterParams = RegisterParams()
    normalize: NormalizeParams = NormalizeParams()
    cache_dir: str | None = None
    patients: int | None = None                      # synthetic only
    image_size: tuple | None = None                  # synthetic only
    lesion_fraction: float | None = None             # synthetic only (None: the generator's)
    workers: int | None = None
    threads_per_worker: int = 1
    scheduler: str | None = None
    progress: bool = True

    def quality_params(self) -> QualityParams:
        """The quality thresholds in force: the defaults updated by ``quality``."""
        return replace(QualityParams(), **{k: float(v) for k, v in self.quality.items()})

    def pair_params(self) -> PairParams:
        """What changes the registered pixels (NOT the tile size: --size 96 and 256 share it)."""
        return PairParams(out_shape=tuple(int(v) for v in self.out_shape),
                          registration=self.registration, normalize=self.normalize)

    def tile_params(self) -> TileParams:
        return TileParams(size=int(self.size), stride=self.stride,
                          max_background=float(self.max_background),
                          max_border_xor=float(self.max_border_xor))

    def _set_fields(self) -> dict:
        pair = self.pair_params()
        return dict(dataset=self.dataset, size=int(self.size), format=self.fmt,
                    seed=int(self.seed), shard_size=int(self.shard_size),
                    splits=tuple(int(v) for v in self.splits),
                    max_background=float(self.max_background), quality=self.quality_params(),
                    out_shape=pair.out_shape, registration=pair.registration,
                    normalize=pair.normalize, **self._synthetic_params())

    def pair_set_params(self) -> PairSetParams:
        """The manifest's params of a pair set: what changes the shards' bytes."""
        tiles = self.tile_params()
        return PairSetParams(**self._set_fields(), stride=tiles.stride,
                             max_border_xor=tiles.max_border_xor)

    def patch_set_params(self, task: str) -> PatchSetParams:
        """The manifest's params of a labelled patch set (no grid stride, no border rule)."""
        return PatchSetParams(**self._set_fields(), task=task)

    def _synthetic_params(self) -> dict:
        if self.dataset != "synthetic":
            return {"patients": None, "image_size": None, "lesion_fraction": None}
        from ingest.adapters import synthetic

        fraction = synthetic.DEFAULT_LESION_FRACTION if self.lesion_fraction is None \
            else self.lesion_fraction
        return {"patients": int(self.patients or synthetic.DEFAULT_PATIENTS),
                "image_size": tuple(self.image_size or synthetic.DEFAULT_IMAGE_SIZE),
                "lesion_fraction": float(fraction)}
