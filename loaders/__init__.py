"""Loaders: 16-bit patch pairs from WebDataset shards to float batches (DALI or PyTorch).

    from loaders import make_loader, AugmentSpec
    loader = make_loader("s3://bucket/shards", mode="pairs", backend="torch", batch_size=256,
                         augment=AugmentSpec(size=96), rank=rank, world_size=world, workers=6)
"""
from loaders.api import BACKENDS, Loader, make_loader
from loaders.augment import AugmentSpec, ViewSpecs
from loaders.modes import MODES

__all__ = ["AugmentSpec", "BACKENDS", "Loader", "MODES", "ViewSpecs", "make_loader"]
