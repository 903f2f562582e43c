"""Benchmark of ``build-shards`` end to end: exam pairs per second, seconds per stage, and the
driver's peak memory at two dataset sizes.

    ingest bench --patients 8                 # 1 and 2 workers, default image size
    ingest bench --patients 8 --memory 8 32   # + driver peak memory at 8 and 32 patients

(``python -m ingest.bench`` is the same command; each timed build runs as one.)

Each build runs in a fresh subprocess with a fresh pair cache (so every pair is decoded,
normalised and registered), on one synthetic dataset generated once beforehand (generation is
not timed). The baseline is the 1-worker build in the same run; the ratio printed is the
speed-up of each worker count over it. Figures are medians over ``--repeats``. Besides wall time
it prints the CPU seconds of the whole build (every process, from ``getrusage``) and per stage
inside the tasks (``report.json``'s ``task_cpu_seconds``): on a shared machine the wall figures
follow the other jobs' load, the CPU figures much less.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shards.cmdline import Parser, positive_int

STAGES = ("decode", "normalise", "register", "cache_write", "tile", "read", "encode", "write")


def one_build(args) -> dict:
    """Run one build in this process; print the figures as one JSON line."""
    from ingest.config import BuildConfig
    from ingest.pipeline import build_shards

    config = BuildConfig(dataset="synthetic", out=args.out, cache_dir=args.cache_dir,
                         size=args.size, patients=args.patients,
                         image_size=tuple(args.image_size) if args.image_size else None,
                         out_shape=tuple(args.out_shape), workers=args.workers, progress=False)
    start = time.perf_counter()
    report = build_shards(config)
    wall = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF)
    peak_kb = own.ru_maxrss   # kB on Linux
    return {"workers": args.workers, "patients": args.patients, "wall": wall,
            "pairs": report["pairs"]["formed"], "samples": report["samples"].get("total", 0),
            "pairs_per_second": report["pairs"]["formed"] / wall,
            "stage_seconds": report["seconds"], "task_seconds": report["task_seconds"],
            "task_cpu_seconds": report.get("task_cpu_seconds", {}),
            "driver_peak_mb": peak_kb / 1024.0,
            "driver_cpu": own.ru_utime + own.ru_stime}


def _shape(text: str) -> list[int]:
    return [int(v) for v in text.lower().split("x")]


def run_child(base: Path, data_cache: Path, patients: int, workers: int, opts) -> dict:
    """One build in a subprocess, with a fresh pair cache sharing the generated dataset."""
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=base))
    for item in data_cache.glob("synthetic-*"):
        os.symlink(item, cache / item.name)
    out = Path(tempfile.mkdtemp(prefix="out-", dir=base))
    cmd = [sys.executable, "-m", "ingest.bench", "--child", "--out", str(out), "--cache-dir",
           str(cache), "--patients", str(patients), "--workers", str(workers), "--size",
           str(opts.size), "--out-shape", "x".join(map(str, opts.out_shape))]
    if opts.image_size:
        cmd += ["--image-size", "x".join(map(str, opts.image_size))]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # CPU seconds of the whole build (driver, scheduler and workers: every process of the
    # build is waited for); unlike wall time, it hardly depends on other jobs on the machine.
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result


def generate_once(data_cache: Path, patients: int, opts) -> None:
    from ingest.adapters import synthetic

    kwargs = {"patients": patients, "workers": 2}
    if opts.image_size:
        kwargs["image_size"] = tuple(opts.image_size)
    synthetic.ensure_generated(data_cache, **kwargs)


def median_of(runs: list[dict]) -> dict:
    med = dict(runs[0])
    for key in ("wall", "pairs_per_second", "driver_peak_mb", "cpu", "driver_cpu"):
        med[key] = statistics.median(r[key] for r in runs)
    for key in ("task_seconds", "task_cpu_seconds"):
        med[key] = {s: statistics.median(r[key].get(s, 0.0) for r in runs) for s in STAGES}
    med["stage_seconds"] = {s: statistics.median(r["stage_seconds"].get(s, 0.0) for r in runs)
                            for s in runs[0]["stage_seconds"]}
    return med


def main(argv=None) -> int:
    p = Parser(prog="ingest bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=positive_int, default=8)
    p.add_argument("--workers", type=positive_int, nargs="+", default=[1, 2],
                   help="worker counts to time; the first is the baseline (default 1 2)")
    p.add_argument("--repeats", type=positive_int, default=1)
    p.add_argument("--size", type=positive_int, default=96)
    p.add_argument("--image-size", type=_shape, default=None, help="generated HxW (default 1280x1024)")
    p.add_argument("--out-shape", type=_shape, default=[1152, 896])
    p.add_argument("--memory", type=int, nargs=2, metavar=("SMALL", "LARGE"),
                   help="also measure the driver's peak memory at these two patient counts (1 worker)")
    p.add_argument("--work-dir", help="where to generate and build (default: a temporary folder)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.workers = args.workers[0]
        print(json.dumps(one_build(args)))
        return 0

    base = Path(args.work_dir or tempfile.mkdtemp(prefix="ingest-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    data_cache = base / "data"
    print(f"machine: {os.cpu_count()} CPUs; generating {args.patients} patients once...", flush=True)
    generate_once(data_cache, args.patients, args)
    results = {}
    for workers in args.workers:
        runs = [run_child(base, data_cache, args.patients, workers, args) for _ in range(args.repeats)]
        results[workers] = median_of(runs)
    baseline = results[args.workers[0]]
    print(f"\nbuild-shards, synthetic, {baseline['pairs']} exam pairs, {baseline['samples']} "
          f"samples at {args.size}px, out shape {args.out_shape[0]}x{args.out_shape[1]}, "
          f"median of {args.repeats}")
    print(f"{'workers':>8} {'wall s':>8} {'pairs/s':>8} {'pairs/s/core':>13} {'ratio':>6} "
          f"{'CPU s':>7} {'CPU s/pair':>11}")
    for workers, r in results.items():
        cores = min(workers, os.cpu_count() or 1)
        print(f"{workers:>8} {r['wall']:>8.1f} {r['pairs_per_second']:>8.3f} "
              f"{r['pairs_per_second'] / cores:>13.3f} "
              f"{r['pairs_per_second'] / baseline['pairs_per_second']:>6.2f} "
              f"{r['cpu']:>7.1f} {r['cpu'] / max(r['pairs'], 1):>11.3f}")
    print("(CPU s: user + system seconds of every process of the build; of which in the driver "
          "process, imports, scheduler and cluster start included: "
          + ", ".join(f"{r['driver_cpu']:.1f}" for r in results.values()) + ")")
    for key, what in (("task_cpu_seconds", "CPU seconds"),
                      ("task_seconds", "wall seconds (rise with the machine's load)")):
        print(f"\n{what} per stage per exam pair, inside the tasks, summed over tasks:")
        print(f"{'workers':>8} " + " ".join(f"{s:>11}" for s in STAGES) + f" {'sum':>7}")
        for workers, r in results.items():
            per = [r[key][s] / max(r["pairs"], 1) for s in STAGES]
            print(f"{workers:>8} " + " ".join(f"{v:>11.3f}" for v in per) + f" {sum(per):>7.3f}")
    print("\nwall seconds per driver stage:")
    for workers, r in results.items():
        print(f"{workers:>8} " + ", ".join(f"{k} {v:.1f}" for k, v in r["stage_seconds"].items()))
    if args.memory:
        small, large = args.memory
        print(f"\ndriver peak memory (1 worker), {small} vs {large} patients:")
        mem = {}
        for n in (small, large):
            generate_once(data_cache, n, args)
            mem[n] = run_child(base, data_cache, n, 1, args)
            print(f"{n:>8} patients: {mem[n]['pairs']} pairs, {mem[n]['samples']} samples, "
                  f"driver peak {mem[n]['driver_peak_mb']:.0f} MB")
        print(f"ratio large/small: {mem[large]['driver_peak_mb'] / mem[small]['driver_peak_mb']:.3f}")
    if not args.work_dir:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
