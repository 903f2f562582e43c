"""``loaders bench``: loader throughput against three baselines measured in the same run.

* backend runs: ``make_loader`` for ``seconds`` (steady state: timed from the first batch on, the
  start-up is reported apart), samples/s and shard bytes/s;
* naive baseline: one PNG file per patch on disk (exported once into a temporary folder), PIL and
  torchvision transforms v2 per sample, a DataLoader with the same worker count;
* decode-only bound: the same stored image bytes decoded in tight loops by as many processes as
  the backends have workers / DALI threads (the same parallelism), no augmentation, with the
  schema's decoder; and the same images re-encoded in every registered pixel format: each
  format's bytes per example, single-process decode time and decode-only bound;
* read-only bound: the tar files read from first to last byte.

Every figure is the median of ``repeats`` runs. Ratios are printed against each baseline.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

from loaders import modes
from loaders.api import check_cache, make_loader
from loaders.augment import AugmentSpec
from shards import openers, samples, schema
from shards.shardset import open_shard_set


def _median(values):
    return float(statistics.median(values)) if values else 0.0


def _samples_per_example(mode: str) -> float:
    """Stored samples per training example (ssl examples are half a pair)."""
    return 0.5 if mode == "ssl" else 1.0


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers, once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_cpu_seconds(pids) -> float | None:
    """User + system CPU seconds of running processes (from ``/proc``), None where unreadable."""
    total = 0.0
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick   # utime, stime
    except (OSError, ValueError, IndexError):
        return None
    return total


def _timed(batches, seconds: float, count, shutdown=None, pids=None, sync=None) -> dict:
    """Drain ``batches`` for ``seconds`` after the first batch; wall rate and CPU per example.

    Two CPU figures: ``cpu_ms_per_example`` counts from before start-up to after the workers
    are joined, over all examples (first batch included); ``steady_cpu_ms_per_example`` counts
    from the first batch to the last, over the examples after the first batch, this process plus
    the running workers ``pids()`` (read from ``/proc``; None where that is not possible), the
    like-for-like figure next to the decode-only bound, whose processes' start-up is not counted
    either. On a shared machine CPU is steadier than the wall clock, and on an idle one with
    enough cores the throughput follows ``1 / cpu_per_example``. ``sync``: called after each
    batch (a GPU's queue drained, so that a batch counts once its work is done).
    """
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    iterator = iter(batches)
    examples = total = 0
    first = start = None
    steady = None

    def steady_cpu():
        """(main process + workers, main process) CPU seconds; None where unreadable."""
        workers = process_cpu_seconds(pids()) if pids is not None else 0.0
        own = os.times()
        return None if workers is None else (own.user + own.system + workers,
                                             own.user + own.system)

    try:
        for batch in iterator:
            if sync is not None:
                sync()
            now = time.perf_counter()
            n = count(batch)
            total += n
            if first is None:
                first, start = now - t0, now
                steady = steady_cpu()
                continue
            examples += n
            if now - start >= seconds:
                break
        end = time.perf_counter()
        steady_end = steady_cpu()
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()          # a generator: its DataLoader / DALI pipeline shuts down here
        del iterator
        if shutdown is not None:
            shutdown()       # persistent workers: joined here, so their CPU is counted
        import gc

        gc.collect()
    steady_ms = main_ms = None
    if steady is not None and steady_end is not None and examples:
        steady_ms = 1000.0 * (steady_end[0] - steady[0]) / examples
        main_ms = 1000.0 * (steady_end[1] - steady[1]) / examples
    return {"examples_per_s": examples / (end - start), "startup_s": first,
            "cpu_ms_per_example": 1000.0 * (cpu_seconds() - cpu0) / max(1, total),
            "steady_cpu_ms_per_example": steady_ms, "main_cpu_ms_per_example": main_ms}


def _endless(loader):
    while True:
        yield from loader


def time_backend(source, *, mode, backend, batch_size, seconds, workers, spec, cache_dir=None,
                 seed=0, device=None) -> dict:
    """One timed run of ``make_loader``: examples/s after the first batch, start-up, CPU."""
    loader = make_loader(source, mode=mode, backend=backend, batch_size=batch_size,
                         augment=spec, workers=workers, seed=seed, cache_dir=cache_dir,
                         device=device)
    timed = _timed(_endless(loader), seconds, lambda b: len(b["key"]),
                   shutdown=getattr(loader, "close", None), pids=loader.worker_pids,
                   sync=_sync(device))
    # what the reads met: retries of the remote layer, samples skipped (none unless asked)
    timed["retries"] = sum(s["retries"] for s in loader.stats.values())
    timed["samples_skipped"] = sum(s["samples_skipped"] for s in loader.stats.values())
    return timed


def _sync(device):
    if device is None or torch.device(device).type != "cuda":
        return None
    return torch.cuda.synchronize


def tar_bytes(shard_set) -> int:
    """The split's shard bytes: the manifest's figure, else (an older manifest) the local
    files' sizes."""
    if shard_set.bytes is not None:
        return shard_set.bytes
    total = 0
    for ref in shard_set.shards:
        path = openers.local_path(ref.url)
        total += os.path.getsize(path) if path else 0
    return total


def collect_images(shard_set, limit: int) -> tuple[list[bytes], str, int, int]:
    """Up to ``limit`` stored image fields (bytes), the pixel format, size and bits."""
    images, fmt, size, bits = [], "png", 0, 12
    for ref in shard_set.shards:
        for sample in samples.iter_samples(ref.url, endpoint=shard_set.endpoint):
            fmt = schema.sample_format(sample)
            meta = json.loads(sample[schema.META_FIELD])
            size, bits = int(meta["size"]), int(meta["bits"])
            images += [sample[f] for f in schema.image_fields(schema.sample_kind(sample), fmt)]
            if len(images) >= limit:
                return images[:limit], fmt, size, bits
    return images, fmt, size, bits


def _decode_loop(images: list[bytes], fmt: str, size: int, seconds: float) -> tuple:
    """One process decoding ``images`` over and over: (images, wall s, CPU s)."""
    n, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for data in images:
            schema.decode_image(data, fmt, size)
        n += len(images)
    return n, time.perf_counter() - start, time.process_time() - cpu0


def decode_bound(images: list[bytes], fmt: str, size: int, seconds: float,
                 processes: int = 1) -> dict:
    """Images decoded per second by ``processes`` processes in tight loops (the backends'
    parallelism: as many as their workers / threads), no augmentation; and CPU ms per image.

    Each process decodes the same images for ``seconds``; the rate is the sum of the
    processes' rates, the CPU the sum of their CPU times over all images decoded.
    """
    if processes <= 1:
        runs = [_decode_loop(images, fmt, size, seconds)]
    else:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with (ctx or mp).Pool(processes) as pool:
            runs = pool.starmap(_decode_loop, [(images, fmt, size, seconds)] * processes)
    n = sum(r[0] for r in runs)
    return {"per_s": sum(r[0] / r[1] for r in runs),
            "cpu_ms": 1000.0 * sum(r[2] for r in runs) / max(1, n)}


def format_bounds(images: list[bytes], fmt: str, size: int, seconds: float, processes: int,
                  patches: int) -> dict:
    """Every registered pixel format on the same images (re-encoded from ``fmt``): stored
    bytes per example (the images' own bytes, without the tar's headers), single-process
    decode µs per image, and the decode-only bound of ``processes`` processes in examples/s."""
    from shards import codecs

    pixels = [schema.decode_image(data, fmt, size) for data in images]
    out = {}
    for name in codecs.CODECS:
        encoded = [schema.encode_image(image, name) for image in pixels]
        one = decode_bound(encoded, name, size, seconds / 2, processes=1)
        many = decode_bound(encoded, name, size, seconds / 2, processes=processes)
        out[name] = {"bytes_per_example": patches * sum(map(len, encoded)) / len(encoded),
                     "decode_us_per_image": 1000.0 * one["cpu_ms"],
                     "decode_bound_examples_per_s": many["per_s"] / patches}
    return out


def read_bound(shard_set, seconds: float) -> float:
    """Shard bytes read per second."""
    total, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for ref in shard_set.shards:
            with openers.open_url(ref.url, endpoint=shard_set.endpoint) as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total / (time.perf_counter() - start)


# --- naive baseline --------------------------------------------------------------------------

def export_pngs(shard_set, out: str, mode: str) -> list[tuple]:
    """One PNG file per patch; returns the dataset's items ``(paths, bits, label)``."""
    from loaders.modes import KINDS

    os.makedirs(out, exist_ok=True)
    items = []
    for ref in shard_set.shards:
        for sample in samples.iter_samples(ref.url, endpoint=shard_set.endpoint):
            decoded = schema.decode(sample, kind=KINDS[mode])
            paths = []
            for i, image in enumerate(decoded.images):
                path = os.path.join(out, f"{decoded.key}_{i}.png")
                with open(path, "wb") as f:
                    f.write(schema.encode_image(image, "png"))
                paths.append(path)
            meta = decoded.meta
            if mode == "ssl":
                items += [((p,), meta["bits"], 0) for p in paths]
            else:
                items.append((tuple(paths), meta["bits"], int(meta.get("label", 0))))
    return items


class NaiveDataset(torch.utils.data.Dataset):
    """PIL + torchvision transforms v2, one sample at a time (the usual first loader)."""

    def __init__(self, items, spec: AugmentSpec, views: int):
        self.items, self.spec, self.views = items, spec, views

    def __len__(self):
        return len(self.items)

    def _transform(self, x):
        from torchvision.transforms import v2
        from torchvision.transforms.v2 import functional as F

        s = self.spec
        x = v2.RandomResizedCrop(s.size, scale=s.scale, ratio=s.ratio, antialias=True)(x)
        x = F.adjust_gamma(x, float(np.exp(np.random.uniform(*np.log(s.gamma)))))
        c, m = float(np.random.uniform(*s.contrast)), x.mean()
        x = ((x - m) * c + m).clamp(0.0, 1.0)   # adjust_contrast takes 1 or 3 channels only
        x = v2.RandomHorizontalFlip(s.hflip)(x)
        return v2.RandomVerticalFlip(s.vflip)(x)

    def __getitem__(self, i):
        from PIL import Image

        paths, bits, label = self.items[i]
        images = []
        for path in paths:
            with Image.open(path) as img:
                images.append(torch.from_numpy(np.asarray(img, dtype=np.uint16).astype(np.float32)))
        x = torch.stack(images) / float(2 ** bits - 1)
        return [self._transform(x) for _ in range(self.views)], label


def time_naive(items, *, mode, batch_size, seconds, workers, spec, device=None) -> dict:
    """The naive loader's batches, moved to ``device`` as its user would."""
    dataset = NaiveDataset(items, spec, views=2 if mode == "ssl" else 1)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True)

    def batches():
        while True:
            for views, label in loader:
                if device is not None:
                    views = [v.to(device, non_blocking=True) for v in views]
                yield views, label

    return _timed(batches(), seconds, lambda b: b[0][0].shape[0], sync=_sync(device))


# --- the whole benchmark ---------------------------------------------------------------------

def run(source, *, mode="pairs", backends=("torch", "dali"), batch_size=64, seconds=5.0,
        workers=2, repeats=3, spec=None, cache_dir=None, compare=None, endpoint=None,
        device=None, log=print) -> dict:
    """The whole benchmark; ``compare``: another shard set (e.g. the same pixels as PNG) timed
    with the same backends in the same rounds, reported as a ratio. ``device``: where the
    batches go (``"cuda"``: the backends' GPU paths; the naive loader's batches are moved
    there); default the CPU."""
    shard_set = open_shard_set(source, endpoint=endpoint)
    modes.check_set(shard_set, mode)
    for backend in backends:
        check_cache(backend, shard_set, cache_dir)
    spec = (spec or AugmentSpec()).resolve(shard_set.patch_size)
    if compare is not None:
        compare = open_shard_set(compare, endpoint=endpoint)
    if not shard_set.is_local and cache_dir is None:
        log("note: remote shards; bounds and the naive export read them over the network")
    per_example = _samples_per_example(mode)
    total_bytes = tar_bytes(shard_set) or 1
    bytes_per_sample = total_bytes / max(1, shard_set.samples)
    images, fmt, size, bits = collect_images(shard_set, 512)
    result = {"source": str(source), "mode": mode, "format": fmt, "patch": size,
              "augment": spec.to_dict(), "batch_size": batch_size, "workers": workers,
              "seconds": seconds, "repeats": repeats, "cpu_count": os.cpu_count(),
              "cuda": torch.cuda.is_available(), "samples_in_set": shard_set.samples,
              "device": str(device or "cpu"), "device_name": _device_name(device),
              "backends": {}}
    log(f"device: {result['device']} ({result['device_name']}), {os.cpu_count()} CPU cores")
    # Repeats are interleaved (every measurement once per round) so that the load of a shared
    # machine drifting during the run hits all of them alike; ratios are taken per round.
    patches = 2 if mode == "pairs" else 1   # images decoded per example
    tmp = tempfile.mkdtemp(prefix="naive-pngs-")
    rounds = []
    try:
        items = export_pngs(shard_set, tmp, mode)
        if len(items) < batch_size:   # the naive loader drops its last partial batch
            raise ValueError(f"{source}: {len(items)} examples in the split ({mode} mode), fewer "
                             f"than one batch of {batch_size}: give a smaller --batch-size")
        for r in range(repeats):
            row = {}
            for backend in backends:
                run_ = time_backend(shard_set, mode=mode, backend=backend,
                                    batch_size=batch_size, seconds=seconds, workers=workers,
                                    spec=spec, cache_dir=cache_dir, device=device)
                row[backend] = run_["examples_per_s"]
                row[backend + "_startup_s"] = run_["startup_s"]
                row[backend + "_cpu_ms"] = run_["cpu_ms_per_example"]
                row[backend + "_steady_cpu_ms"] = _steady(run_)
                row[backend + "_main_cpu_ms"] = run_["main_cpu_ms_per_example"] or 0.0
                row[backend + "_retries"] = run_["retries"]
                if compare is not None:
                    other = time_backend(compare, mode=mode, backend=backend,
                                         batch_size=batch_size, seconds=seconds,
                                         workers=workers, spec=spec, cache_dir=cache_dir,
                                         device=device)
                    row[backend + "_compare"] = other["examples_per_s"]
                    row[backend + "_compare_cpu_ms"] = other["cpu_ms_per_example"]
                    row[backend + "_compare_steady_cpu_ms"] = _steady(other)
            dec = decode_bound(images, fmt, size, seconds, processes=max(1, workers))
            row["decode"] = dec["per_s"] / patches
            row["decode_cpu_ms"] = dec["cpu_ms"] * patches
            row["read_bytes"] = read_bound(shard_set, min(seconds, 2.0))
            row["read"] = row["read_bytes"] / bytes_per_sample / per_example
            naive = time_naive(items, mode=mode, batch_size=batch_size, seconds=seconds,
                               workers=workers, spec=spec, device=device)
            row["naive"] = naive["examples_per_s"]
            row["naive_cpu_ms"] = naive["cpu_ms_per_example"]
            rounds.append(row)
            log(f"round {r + 1}/{repeats}: " + ", ".join(
                f"{k} {v:.0f}" for k, v in row.items()
                if not k.endswith(("_s", "_bytes", "_ms", "_retries"))))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: _median([row[k] for row in rounds]) for k in rounds[0]}
    for backend in backends:
        rate = med[backend]
        result["backends"][backend] = {
            "examples_per_s": rate, "bytes_per_s": rate * per_example * bytes_per_sample,
            "startup_s": med[backend + "_startup_s"], "runs": [row[backend] for row in rounds],
            "cpu_ms_per_example": med[backend + "_cpu_ms"],
            "steady_cpu_ms_per_example": med[backend + "_steady_cpu_ms"],
            "main_cpu_ms_per_example": med[backend + "_main_cpu_ms"],
            "retries": sum(row[backend + "_retries"] for row in rounds)}
        log(f"{backend:6s} {rate:10.0f} {mode} examples/s  "
            f"{rate * per_example * bytes_per_sample / 1e6:8.1f} MB/s  "
            f"{med[backend + '_steady_cpu_ms']:6.3f} CPU ms/example  "
            f"({med[backend + '_cpu_ms']:.3f} with start-up and shut-down; "
            f"start-up {med[backend + '_startup_s']:.2f} s; "
            f"{result['backends'][backend]['retries']} read retries)")
    result["decode_bound_examples_per_s"] = med["decode"]
    result["read_bound_bytes_per_s"] = med["read_bytes"]
    result["read_bound_examples_per_s"] = med["read"]
    result["naive_examples_per_s"] = med["naive"]
    result["decode_bound_cpu_ms_per_example"] = med["decode_cpu_ms"]
    result["naive_cpu_ms_per_example"] = med["naive_cpu_ms"]
    result["rounds"] = rounds
    log(f"decode {med['decode']:10.0f} {mode} examples/s  {'':11s}"
        f"{med['decode_cpu_ms']:6.3f} CPU ms/example  "
        f"({max(1, workers)} process{'es' if workers > 1 else ''}, {fmt}, "
        "no augmentation)")
    log(f"read   {med['read']:10.0f} {mode} examples/s  {med['read_bytes'] / 1e6:8.1f} MB/s  "
        f"(tar bytes only)")
    log(f"naive  {med['naive']:10.0f} {mode} examples/s  {'':11s}"
        f"{med['naive_cpu_ms']:6.3f} CPU ms/example  (PNG files, PIL + transforms v2 per sample)")
    result["formats"] = format_bounds(images, fmt, size, min(seconds, 2.0), max(1, workers),
                                      patches)
    raw_bytes = result["formats"]["raw"]["bytes_per_example"]
    for name, f in result["formats"].items():
        log(f"format {name:7s} {f['bytes_per_example']:9.0f} bytes/example "
            f"({f['bytes_per_example'] / raw_bytes:.3f} of raw)  "
            f"decode {f['decode_us_per_image']:7.1f} µs/image (1 process), "
            f"bound {f['decode_bound_examples_per_s']:9.0f} {mode} examples/s "
            f"({max(1, workers)} processes, no augmentation)")
    best = max(backends, key=lambda b: med[b])
    result["best_backend"] = best
    result["ratios"] = {
        "vs_decode_bound": _median([row[best] / row["decode"] for row in rounds]),
        "vs_naive": _median([row[best] / row["naive"] for row in rounds]),
        "vs_read_bound": _median([row[best] / row["read"] for row in rounds]),
        # CPU efficiency: what the ratios become when every measurement gets the same CPU;
        # against the bound (steady decoding loops) the backend's steady-state CPU, against
        # the naive loader (workers restarted every epoch) both runs' whole CPU
        "cpu_vs_decode_bound": _median([row["decode_cpu_ms"] / row[best + "_steady_cpu_ms"]
                                        for row in rounds]),
        "cpu_vs_naive": _median([row["naive_cpu_ms"] / row[best + "_cpu_ms"] for row in rounds])}
    if compare is not None:
        result["compare"] = {"source": compare.root, "backends": {}}
        for backend in backends:
            other = med[backend + "_compare"]
            ratio = _median([row[backend] / row[backend + "_compare"] for row in rounds])
            cpu_ratio = _median([row[backend + "_compare_steady_cpu_ms"]
                                 / row[backend + "_steady_cpu_ms"] for row in rounds])
            result["compare"]["backends"][backend] = {
                "examples_per_s": other, "ratio": ratio, "cpu_ratio": cpu_ratio,
                "cpu_ms_per_example": med[backend + "_compare_cpu_ms"],
                "steady_cpu_ms_per_example": med[backend + "_compare_steady_cpu_ms"]}
            log(f"{backend:6s} {other:10.0f} {mode} examples/s on {compare.root}: this set is "
                f"{ratio:.2f}x that ({cpu_ratio:.2f}x by CPU per example)")
    r = result["ratios"]
    log(f"best: {best}: {r['vs_decode_bound']:.2f}x the decode-only bound, "
        f"{r['vs_naive']:.2f}x the naive baseline, {r['vs_read_bound']:.3f}x the read bound "
        "(medians of per-round ratios)")
    log(f"by CPU per example: {r['cpu_vs_decode_bound']:.2f}x the decode-only bound (steady "
        f"state), {r['cpu_vs_naive']:.2f}x the naive baseline")
    return result


def _device_name(device) -> str:
    """The card's name for a CUDA device, else the processor's."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return platform.processor() or platform.machine()


def _steady(run_: dict) -> float:
    """The steady-state CPU per example, or the whole run's where it could not be read."""
    steady = run_.get("steady_cpu_ms_per_example")
    return steady if steady is not None else run_["cpu_ms_per_example"]


def make_shards(out: str, *, pairs: int = 3000, size: int = 96, per_shard: int = 500,
                formats=None, seed: int = 0, log=print) -> dict:
    """Tissue-like benchmark shard sets ``out/<format>``, one per registered pixel format
    (default) or per name in ``formats``, all of the same pixels."""
    from shards import codecs

    formats = tuple(codecs.CODECS) if formats is None else tuple(formats)
    from loaders import synthetic

    counts = [per_shard] * (pairs // per_shard) + ([pairs % per_shard] if pairs % per_shard else [])
    roots = {}
    for fmt in formats:
        roots[fmt] = synthetic.pair_set(os.path.join(out, fmt), counts=tuple(counts), size=size,
                                        fmt=fmt, seed=seed)
        log(f"wrote {pairs} pairs of {size} px ({fmt}) to {roots[fmt]}")
    return roots
