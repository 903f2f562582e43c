"""The DALI backend: ``fn.readers.webdataset`` with the shards' index files, bit-exact 16-bit
decode on the CPU, the augmentation of ``augment.py`` (its crop, resize, flips and scaling as DALI
operators, on the GPU when there is one, on the CPU when ``device_id=None``; contrast and gamma
drawn in the pipeline and applied by ``augment.photometric``), and a torch iterator.

Epoch contract, the same as the torch backend's where DALI allows:

* the epoch's shard order is ``epochs.shard_order(seed, epoch)``; the reader is rebuilt per epoch
  with that file list, ``shard_id=rank``, ``num_shards=world_size`` and ``stick_to_shard=True``,
  so rank ``r`` reads exactly the contiguous range ``epochs.rank_range`` of the epoch's sequence;
* ``pad_last_batch=True`` makes every rank run ``ceil(ceil(N/R)/B)`` full batches; the iterator
  uses ``LastBatchPolicy.FILL`` (full batches, the padding repeats the rank's last sample) and the
  loader flags the padded slots ``is_pad`` from the counts, so nothing is dropped or seen twice;
* within a rank, DALI's reader shuffles with a window of ``shuffle_buffer`` samples, seeded from
  ``(seed, epoch, rank)``: deterministic, but a different order than the torch backend's;
* resume: the pipeline for the epoch is rebuilt and the ``k`` batches already consumed are read
  and discarded (the reader state cannot be moved forward without reading). Exactly-once and
  the sequence are preserved; the cost is reading those batches again.

DALI cannot parse JSON, so the scale ``2**bits - 1`` is one number per pipeline: the shard set's
``params["bits"]`` or the first sample's; each batch's metadata is checked against it.
ssl mode reads pairs and returns both patches of each pair (``B/2`` pairs per batch of ``B``).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os

import numpy as np
import torch

from loaders.augment import AugmentSpec, ViewSpecs, per_view, photometric
from loaders.epochs import rank_range, shard_order
from loaders.metadata import BatchMeta
from loaders.modes import KINDS
from loaders.sources import cached
from shards import codecs, openers, samples, schema
from shards.shardset import ShardSet

READER = "reader"


def augment_dali(x, spec: AugmentSpec, top: float, size_in: int):
    """The augmentation's geometry on an HWC uint16 DataNode -> (CHW float32 in [0, 1], gamma,
    contrast): the per-sample photometric draws (DataNodes, ``None`` for a fixed identity) that
    ``augment.photometric`` applies to the output batch.

    The crop and resize, the flips, the HWC -> CHW transpose and the scaling are two DALI
    operators (``random_resized_crop``, ``crop_mirror_normalize``). Contrast and gamma are not:
    DALI's CPU arithmetic runs about one scalar operation per pixel at a time (its fused
    expression cost more than the crop and the decode together at 96 px), torch's vectorised
    kernels run the same steps in a third of the time, and so both backends share one
    implementation of them. The draws stay DALI's (``fn.random.uniform``, seeded with the
    pipeline).
    """
    from nvidia.dali import fn, types

    identity_crop = (spec.scale == (1.0, 1.0) and spec.ratio == (1.0, 1.0)
                     and spec.size == size_in)
    if not identity_crop:   # float output: no rounding back to integers, as in torch
        x = fn.random_resized_crop(x, size=[spec.size, spec.size], random_area=list(spec.scale),
                                   random_aspect_ratio=list(spec.ratio), num_attempts=10,
                                   interp_type=types.INTERP_LINEAR, antialias=True,
                                   dtype=types.FLOAT)
    photometric = spec.gamma != (1.0, 1.0) or spec.contrast != (1.0, 1.0)
    if photometric:
        # scaling folded into the transpose: x * (1 / top) (within an ulp of x / top)
        x = fn.crop_mirror_normalize(x, mirror=fn.random.coin_flip(probability=spec.hflip),
                                     output_layout="CHW", dtype=types.FLOAT, mean=[0.0],
                                     std=[float(top)])
    else:   # exactly x / top, bit-identical with the torch backend's scaling
        x = fn.crop_mirror_normalize(x / np.float32(top),
                                     mirror=fn.random.coin_flip(probability=spec.hflip),
                                     output_layout="CHW", dtype=types.FLOAT)
    if spec.vflip > 0:
        x = fn.flip(x, horizontal=0, vertical=fn.random.coin_flip(probability=spec.vflip))
    gamma = _log_uniform(*spec.gamma) if spec.gamma != (1.0, 1.0) else None
    contrast = _uniform(*spec.contrast) if spec.contrast != (1.0, 1.0) else None
    return x, gamma, contrast


def _uniform(lo: float, hi: float):
    """A per-sample uniform draw; DALI refuses empty ranges, so a fixed value is a constant."""
    from nvidia.dali import fn, types

    if hi > lo:
        return fn.random.uniform(range=[lo, hi])
    return types.Constant(np.float32(lo))


def _log_uniform(lo: float, hi: float):
    from nvidia.dali import types
    import nvidia.dali.math as dmath

    if hi > lo:
        return dmath.exp(_uniform(math.log(lo), math.log(hi)))
    return types.Constant(np.float32(lo))


def decode_dali(data, codec, size_in: int, device_id):
    """One image field -> HWC uint16 pixels, on the GPU when there is one.

    ``codec.dali`` says how: ``"image"``: nvImageCodec's decoder, ``device="mixed"`` (the GPU)
    for a codec it decodes there (HTJ2K: nvJPEG2000), else on the CPU; ``"pixels"``: the reader
    already delivered the uint16 pixels; ``"python"``: the codec's own CPU decoder
    (``fn.python_function``, one call per sample on DALI's Python thread)."""
    from nvidia.dali import fn, types

    if codec.dali == "image":
        on_gpu = codec.gpu and device_id is not None
        # DALI's CPU JPEG 2000 path (OpenCV's OpenJPEG) warns once per image that a grayscale
        # codestream has no colour space; the pixels are exact, the warnings only noise
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        img = fn.decoders.image(data, device="mixed" if on_gpu else "cpu",
                                output_type=types.GRAY, dtype=types.UINT16)
        return img if on_gpu or device_id is None else img.gpu()
    if codec.dali == "pixels":
        img = fn.reshape(data, shape=[size_in, size_in, 1])
    else:
        img = fn.python_function(data, function=functools.partial(_python_decode, codec.decode,
                                                                  size_in))
    return img.gpu() if device_id is not None else img


def _python_decode(decode, size_in: int, data: np.ndarray) -> np.ndarray:
    return decode(data.tobytes(), size_in)[:, :, None]


def build_pipeline(paths, index_paths, *, mode: str, fmt: str, size_in: int, top: float,
                   spec: AugmentSpec | ViewSpecs, batch_size: int, shard_id: int,
                   num_shards: int, seed: int, shuffle_buffer: int, device_id, num_threads: int):
    """``spec``: one ``AugmentSpec``, or in ssl mode ``ViewSpecs`` (one per view)."""
    from nvidia.dali import fn, pipeline_def, types

    fields = schema.image_fields(KINDS[mode], fmt)
    codec = codecs.codec(fmt)
    exts = list(fields) + [schema.META_FIELD]
    # raw images arrive as their uint16 pixels, encoded ones (and the JSON) as bytes
    dtypes = [types.UINT16 if codec.dali == "pixels" else types.UINT8] * len(fields) + [types.UINT8]

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, seed=seed,
                  prefetch_queue_depth=2)
    def pipe():
        outs = fn.readers.webdataset(
            paths=paths, index_paths=index_paths, ext=exts, dtypes=dtypes,
            missing_component_behavior="error", shard_id=shard_id, num_shards=num_shards,
            pad_last_batch=True, stick_to_shard=True, random_shuffle=shuffle_buffer > 1,
            initial_fill=max(1, shuffle_buffer), seed=seed, name=READER)
        *encoded, meta = outs
        images = [decode_dali(data, codec, size_in, device_id) for data in encoded]
        meta = fn.pad(meta, fill_value=32, axes=(0,))   # JSON allows trailing blanks
        # "<tar>:<offset>:<key>.<ext>": the sample's key, which DALI does not return otherwise
        source = fn.pad(fn.get_property(encoded[0], key="source_info"), fill_value=0, axes=(0,))
        if mode == "pairs":
            views = [augment_dali(fn.cat(images[0], images[1], axis=2), spec, top, size_in)]
        elif mode == "ssl":   # left1, left2, right1, right2 (one spec: the same graph)
            views = [augment_dali(img, view_spec, top, size_in) for img in images
                     for view_spec in per_view(spec, 2)]
        else:
            views = [augment_dali(images[0], spec, top, size_in)]
        outs = []
        for x, gamma, contrast in views:
            outs += [x] + [d for d in (gamma, contrast) if d is not None]
        return (*outs, meta, source)

    return pipe()


def output_names(mode: str, spec: AugmentSpec | ViewSpecs) -> list[str]:
    """The pipeline's outputs: each view, followed by its photometric draws when drawn."""
    if mode == "pairs":
        views = [("pixels", spec)]
    elif mode == "ssl":
        first, second = per_view(spec, 2)
        views = [("left1", first), ("left2", second), ("right1", first), ("right2", second)]
    else:
        views = [("image", spec)]
    names = []
    for view, view_spec in views:
        names += [view] + [f"{view}_{d}" for d, fixed in (("gamma", view_spec.gamma),
                                                          ("contrast", view_spec.contrast))
                           if fixed != (1.0, 1.0)]
    return names + ["meta", "source"]


def local_paths(shard_set: ShardSet, cache_dir: str | None) -> tuple[list[str], list[str]]:
    """Local tar and index paths (remote shards go through the local cache first)."""
    if not shard_set.is_local and cache_dir is None:
        raise ValueError(f"{shard_set.root}: the DALI backend reads remote shards through a "
                         "local cache: pass cache_dir=")
    tars, idxs = [], []
    for ref in shard_set.shards:
        if ref.index_url is None:
            raise ValueError(f"{ref.url}: no DALI index file in the manifest")
        tars.append(openers.local_path(cached(ref.url, cache_dir, shard_set.endpoint)))
        idxs.append(openers.local_path(cached(ref.index_url, cache_dir, shard_set.endpoint)))
    return tars, idxs


def probe(shard_set: ShardSet, cache_dir) -> tuple[str, int, int]:
    """(pixel format, patch size, bits) from the first sample of the first shard."""
    url = cached(shard_set.shards[0].url, cache_dir, shard_set.endpoint)
    with contextlib.closing(samples.iter_samples(url, endpoint=shard_set.endpoint)) as stored:
        sample = next(stored)
    meta = json.loads(sample[schema.META_FIELD])
    bits = int(shard_set.params.get("bits", meta["bits"]))
    return schema.sample_format(sample), int(meta["size"]), bits


def dali_batches(shard_set: ShardSet, mode: str, *, spec: AugmentSpec | ViewSpecs,
                 batch_size: int, seed: int, rank: int, world_size: int, n_batches: int,
                 shuffle_buffer: int, threads: int, epoch: int, done: int, device=None,
                 cache_dir: str | None = None):
    """The DALI backend's batches for ``epoch``, from batch ``done`` on (``n_batches`` in
    all: every rank's count, see ``epochs.batches_per_rank``)."""
    from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

    if shard_set.samples < world_size:
        raise ValueError(f"{shard_set.root}: {shard_set.samples} samples for {world_size} ranks: "
                         "DALI's reader needs at least one per rank (the torch backend pads "
                         "empty ranks)")
    fmt, size_in, bits = probe(shard_set, cache_dir)
    tars, idxs = local_paths(shard_set, cache_dir)
    order = shard_order(len(tars), seed, epoch)
    per_batch = batch_size // 2 if mode == "ssl" else batch_size
    pipe = build_pipeline([tars[i] for i in order], [idxs[i] for i in order], mode=mode, fmt=fmt,
                          size_in=size_in, top=float(2 ** bits - 1), spec=spec,
                          batch_size=per_batch, shard_id=rank, num_shards=world_size,
                          seed=_seed(seed, epoch, rank), shuffle_buffer=shuffle_buffer,
                          device_id=_device_id(device), num_threads=threads)
    names = output_names(mode, spec)
    iterator = DALIGenericIterator([pipe], names, reader_name=READER,
                                   last_batch_policy=LastBatchPolicy.FILL, auto_reset=False)
    begin, end = rank_range(shard_set.samples, rank, world_size)
    real = end - begin
    try:
        for j, out in enumerate(iterator):
            if j >= n_batches:
                break
            if j < done:
                continue
            yield _to_batch(mode, _photometric(out[0]), j, per_batch, real, bits, device)
    finally:
        del iterator, pipe


def _photometric(out: dict) -> dict:
    """Contrast and gamma (``augment.photometric``) on each view, with the pipeline's draws.

    On the CPU this runs on the calling thread alone: DALI's threads already hold the loader's
    cores, and torch's intra-op pool spinning beside them cost 70% more CPU per batch.
    """
    on_cpu = all(v.device.type == "cpu" for v in out.values() if isinstance(v, torch.Tensor))
    threads = torch.get_num_threads()
    if on_cpu and threads > 1:
        torch.set_num_threads(1)
    try:
        return _apply_photometric(out)
    finally:
        if on_cpu and threads > 1:
            torch.set_num_threads(threads)


def _apply_photometric(out: dict) -> dict:
    for view in [n for n in out if n in ("pixels", "image", "left1", "left2", "right1",
                                         "right2")]:
        gamma, contrast = out.pop(view + "_gamma", None), out.pop(view + "_contrast", None)
        if gamma is not None or contrast is not None:
            out[view] = photometric(out[view], None if gamma is None else gamma.view(-1),
                                    None if contrast is None else contrast.view(-1))
    return out


def _to_batch(mode, out: dict, j: int, per_batch: int, real: int, bits: int, device) -> dict:
    # one numpy view per batch, its rows (JSON padded with blanks) parsed in one json.loads
    metas, text = schema.parse_metas([row.tobytes() for row in out["meta"].numpy()])
    for m in metas:
        if int(m["bits"]) != bits:
            raise ValueError(f"sample has bits={m['bits']}, the DALI pipeline scales by "
                             f"{bits}: shard sets with mixed bit depths need the torch backend")
    pad = torch.arange(j * per_batch, (j + 1) * per_batch) >= real
    out_keys = [_source_key(row) for row in out["source"].numpy()]
    batch = {"meta": BatchMeta(metas, text), "batch_index": j}
    if mode == "pairs":
        x = out["pixels"]
        batch.update(left=x[:, :1], right=x[:, 1:], is_pad=pad, key=out_keys,
                     area=torch.tensor([float(m["area"]["pair"]) for m in metas]))
    elif mode == "ssl":
        batch.update(view1=torch.cat([out["left1"], out["right1"]]),
                     view2=torch.cat([out["left2"], out["right2"]]),
                     is_pad=torch.cat([pad, pad]), meta=BatchMeta(metas + metas),
                     key=[f"{k}/left" for k in out_keys] + [f"{k}/right" for k in out_keys])
    else:
        batch.update(image=out["image"], is_pad=pad, key=out_keys,
                     label=torch.tensor([int(m["label"]) for m in metas], dtype=torch.int64))
    return _to_device(batch, device)


def _source_key(row: np.ndarray) -> str:
    member = row.tobytes().rstrip(b"\0").decode("utf-8").rsplit(":", 1)[-1]
    return member.split(".", 1)[0]


def _to_device(batch: dict, device):
    if device is None:
        return batch
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


def _device_id(device):
    """``None`` (CPU-only DALI) unless a CUDA device is asked for and present."""
    if device is None:
        return None
    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    return dev.index if dev.index is not None else torch.cuda.current_device()


def _seed(seed: int, epoch: int, rank: int) -> int:
    parts = [int(p) & 0xFFFFFFFF for p in (seed, epoch, rank, 0xDA11)]
    return int(np.random.SeedSequence(parts).generate_state(1)[0] & 0x7FFFFFFF)
