"""Shard benchmark: write and stream-read throughput, bytes per pair, against same-run baselines.

    shards bench --out /tmp/shards-bench [--repeats 5] [--pairs-96 512] [--pairs-256 128]

(``python -m shards.bench`` is the same command.)

* write: ``write_shard`` of pre-encoded samples (tar + sha256 + DALI index + fsync + rename) and
  encode + write, against a dd-like write of the same byte count with fsync (the disk's own rate,
  measured in the same run).
* read: stock ``webdataset.WebDataset`` streaming a shard set from the local disk, from an S3
  server (moto, in this process, on 127.0.0.1) and from an HTTP server (127.0.0.1); the local
  webdataset read is the baseline of the remote ones, and a plain read of the tars is printed too.
* size: bytes per pair for png vs raw on tissue-like (1/f^3) patches.

Measurements and their baselines are interleaved round by round (ratios are medians of per-round
ratios), so a shared machine's load changes hit both alike. The page cache is warm for reads, so
local figures are an upper bound; the servers run in this process and share its CPUs.
"""
from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import shutil
import socket
import statistics
import sys
import threading
import time

from shards import manifest, openers, publish, sampledata, schema, writer
from shards.cmdline import Parser, positive_int, run_main


def median_time(fn, repeats: int) -> float:
    return statistics.median(round_robin({"x": fn}, repeats)["x"])


def round_robin(fns: dict, repeats: int) -> dict:
    """Time each function ``repeats`` times, interleaved (a, b, a, b...) so that load changes on
    a shared machine hit the measurement and its baseline alike; returns {name: [seconds]}."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_ratio(numerator: list, denominator: list) -> float:
    """Median of the per-round ratios (robust to a slow round)."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def dd_write(path: str, nbytes: int, chunk: int = 1 << 20) -> None:
    """The disk's raw rate: write ``nbytes`` in 1 MiB chunks, fsync, close (what dd conv=fsync does)."""
    block = os.urandom(chunk)
    with open(path, "wb") as f:
        left = nbytes
        while left > 0:
            f.write(block[: min(chunk, left)])
            left -= chunk
        f.flush()
        os.fsync(f.fileno())
    os.remove(path)


def bench_write(out: str, sizes: dict, repeats: int) -> list[dict]:
    rows = []
    for size, count in sizes.items():
        for fmt in ("png", "raw"):
            start = time.perf_counter()
            samples = sampledata.pair_samples(count, size, fmt, seed=size)
            generate_and_encode = time.perf_counter() - start
            # Encoding alone (the synthetic texture generation excluded).
            decoded = [schema.decode_pair(s) for s in samples[: max(8, count // 8)]]
            pairs = [(d.left, d.right, d.meta) for d in decoded]
            t_enc = median_time(lambda: [schema.encode_pair(f"k{i}", l, r, m, fmt=fmt)
                                         for i, (l, r, m) in enumerate(pairs)], repeats)
            encode_per_sample = t_enc / len(pairs)
            target = os.path.join(out, f"write-{size}-{fmt}")
            record = {}

            def write():
                shutil.rmtree(target, ignore_errors=True)
                record.update(writer.write_shard(samples, target, "train", 0))

            write()
            nbytes = record["bytes"]
            times = round_robin({"write": write, "dd": lambda: dd_write(
                os.path.join(out, "dd.bin"), nbytes)}, repeats)
            t_write, t_dd = statistics.median(times["write"]), statistics.median(times["dd"])
            rows.append({
                "size": size, "format": fmt, "pairs": count, "bytes": nbytes,
                "bytes_per_pair": nbytes / count,
                "write_MBps": nbytes / t_write / 1e6, "write_pairs_per_s": count / t_write,
                "encode_write_pairs_per_s": 1.0 / (encode_per_sample + t_write / count),
                "dd_MBps": nbytes / t_dd / 1e6,
                "ratio_vs_dd": median_ratio(times["dd"], times["write"]),
                "generate_s": generate_and_encode,
            })
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def bench_read(out: str, repeats: int, shards: int = 4, pairs: int = 128, size: int = 96,
               fmt: str = "png") -> list[dict]:
    import webdataset as wds

    root = os.path.join(out, "read-set")
    shutil.rmtree(root, ignore_errors=True)
    records = [writer.write_shard(sampledata.pair_samples(pairs, size, fmt, seed=i, start=i * pairs),
                                  root, "train", i) for i in range(shards)]
    manifest.write_manifest(root, manifest.build_manifest(records, {"bench": True}))
    nbytes = sum(r["bytes"] for r in records)
    nsamples = sum(r["samples"] for r in records)

    def read_plain(urls):
        for url in urls:
            with open(url, "rb") as f:
                while f.read(1 << 20):
                    pass

    def read_wds(urls):
        n = sum(1 for _ in wds.WebDataset(urls, shardshuffle=False))
        assert n == nsamples, (n, nsamples)

    sources = {"local": root}
    servers = []
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=root))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    servers.append(httpd.shutdown)
    sources["http"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        port = _free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        servers.append(moto.stop)
        endpoint = f"http://127.0.0.1:{port}"
        os.environ.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint,
                           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                           "AWS_DEFAULT_REGION": "us-east-1"})
        from shards import upload

        fs = openers.s3_filesystem(endpoint)
        fs.mkdir("bench-shards")
        assert upload.upload(root, "s3://bench-shards/set", endpoint=endpoint).ok
        sources["s3"] = "s3://bench-shards/set"
    except ImportError:
        print("moto is not installed: S3 read skipped", file=sys.stderr)

    rows = []
    try:
        local_urls = manifest.shard_urls(root, "train")
        fns = {"plain": lambda: read_plain(local_urls)}
        for name, source in sources.items():
            fns[name] = functools.partial(read_wds, manifest.shard_urls(source, "train"))
        times = round_robin(fns, repeats)
        t_plain = statistics.median(times["plain"])
        for name in sources:
            t = statistics.median(times[name])
            rows.append({"source": name, "format": fmt, "size": size, "bytes": nbytes,
                         "samples": nsamples, "MBps": nbytes / t / 1e6, "pairs_per_s": nsamples / t,
                         "plain_local_MBps": nbytes / t_plain / 1e6,
                         "ratio_vs_local": median_ratio(times["local"], times[name])})
    finally:
        for stop in servers:
            stop()
    return rows


def format_tables(write_rows, read_rows) -> str:
    lines = ["write (median; dd = same byte count written with fsync in the same run)",
             f"{'size':>4} {'fmt':4} {'pairs':>5} {'bytes/pair':>10} {'MB/s':>7} {'pairs/s':>8} "
             f"{'enc+write pairs/s':>17} {'dd MB/s':>8} {'vs dd':>6}"]
    for r in write_rows:
        lines.append(f"{r['size']:>4} {r['format']:4} {r['pairs']:>5} {r['bytes_per_pair']:>10.0f} "
                     f"{r['write_MBps']:>7.1f} {r['write_pairs_per_s']:>8.0f} "
                     f"{r['encode_write_pairs_per_s']:>17.0f} {r['dd_MBps']:>8.1f} {r['ratio_vs_dd']:>6.2f}")
    by = {(r["size"], r["format"]): r for r in write_rows}
    for size in sorted({r["size"] for r in write_rows}):
        if (size, "png") in by and (size, "raw") in by:
            ratio = by[(size, "png")]["bytes_per_pair"] / by[(size, "raw")]["bytes_per_pair"]
            lines.append(f"bytes per pair at {size}: png/raw = {ratio:.2f}")
    if read_rows:
        r0 = read_rows[0]
        lines.append(f"stream read with webdataset ({r0['samples']} pairs, {r0['size']}px {r0['format']}, "
                     f"{r0['bytes'] / 1e6:.1f} MB; baseline = the same read from local disk; "
                     f"plain local read of the tars: {r0['plain_local_MBps']:.0f} MB/s)")
        lines.append(f"{'source':6} {'MB/s':>8} {'pairs/s':>8} {'vs local':>8}")
        for r in read_rows:
            lines.append(f"{r['source']:6} {r['MBps']:>8.1f} {r['pairs_per_s']:>8.0f} "
                         f"{r['ratio_vs_local']:>8.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = Parser(prog="shards bench", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="scratch folder (on the disk to measure)")
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--pairs-96", type=positive_int, default=512)
    parser.add_argument("--pairs-256", type=positive_int, default=128)
    parser.add_argument("--skip-read", action="store_true")
    parser.add_argument("--json", help="also write the figures as JSON here")
    parser.set_defaults(func=_run)
    return run_main(parser, argv)


def _run(args) -> int:
    os.makedirs(args.out, exist_ok=True)
    write_rows = bench_write(args.out, {96: args.pairs_96, 256: args.pairs_256}, args.repeats)
    read_rows = [] if args.skip_read else bench_read(args.out, args.repeats)
    print(format_tables(write_rows, read_rows))
    if args.json:
        with publish.atomic_open(args.json, "w", fsync=False, fsync_dir=False) as f:
            json.dump({"write": write_rows, "read": read_rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
