"""Soak run (``make soak``, not part of the test suite): many epochs from moto S3 through the
fault-injecting proxy, checking that no sample is lost or repeated and that memory and file
descriptors stay flat; then the cost of ``verify="sha256"`` on a local set. Prints the figures.

    python tests/reliability/soak.py [--epochs 40] [--every 4] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from faultproxy import FaultProxy  # noqa: E402


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _usage(loader) -> tuple[float, int]:
    pids = [os.getpid()] + loader.worker_pids()
    return sum(_rss_mb(p) for p in pids), sum(_fds(p) for p in pids)


def soak(epochs: int, every: int, workers: int) -> bool:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # moto's request log

    from loaders import make_loader, synthetic
    from loaders.synthetic import real_keys
    from shards import openers

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name, value in {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"
                        }.items():
        os.environ[name] = value
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    upstream = f"http://127.0.0.1:{port}"
    defaults = {name: getattr(openers, name) for name in
                ("READ_TIMEOUT_S", "CONNECT_TIMEOUT_S", "BACKOFF_S", "DEADLINE_S")}
    openers.READ_TIMEOUT_S, openers.CONNECT_TIMEOUT_S = 1.0, 1.0
    openers.BACKOFF_S, openers.DEADLINE_S = 0.02, 10.0
    proxy = FaultProxy(upstream, stall_s=5.0)
    try:
        import boto3
        boto3.client("s3", endpoint_url=upstream).create_bucket(Bucket="soak")
        root = "s3://soak/pairs"
        counts = (40,) * 8
        os.environ["AWS_ENDPOINT_URL"] = upstream
        synthetic.pair_set(root, counts=counts, size=32)
        total = sum(counts)
        proxy.every(every, ("reset", "503", "truncate", "stall"))
        loader = make_loader(root, batch_size=16, workers=workers, endpoint=proxy.url,
                             shuffle_buffer=50)
        lost = repeated = 0
        usage, started = [], time.monotonic()
        for epoch in range(epochs):
            keys = real_keys(list(loader))
            lost += total - len(set(keys))
            repeated += len(keys) - len(set(keys))
            usage.append(_usage(loader))
            stats = loader.epoch_stats(epoch)
            print(f"epoch {epoch + 1:3d}: {len(keys)} samples, {stats['retries']} retries, "
                  f"RSS {usage[-1][0]:.0f} MB, {usage[-1][1]} fds", flush=True)
        seconds = time.monotonic() - started
        retries = sum(s["retries"] for s in loader.stats.values())
        loader.close()
        rss_growth = usage[-1][0] - usage[1][0]
        fd_growth = usage[-1][1] - usage[1][1]
        print(f"soak: {epochs} epochs x {total} samples in {seconds:.0f} s; faults injected "
              f"{dict(proxy.applied)} on {proxy.requests} shard GETs; retries {retries}; "
              f"samples lost {lost}, repeated {repeated}; RSS {usage[1][0]:.0f} -> "
              f"{usage[-1][0]:.0f} MB (epoch 2 -> {epochs}), fds {usage[1][1]} -> {usage[-1][1]}")
        stall_ok = stalled_endpoint(root, proxy, defaults)
        # flat: no growth beyond noise between the second epoch (everything started) and the last
        return lost == 0 and repeated == 0 and fd_growth <= 2 and rss_growth < 50 and stall_ok
    finally:
        proxy.close()
        server.stop()


def stalled_endpoint(root: str, proxy, defaults: dict) -> bool:
    """With the default timeouts and deadline: every shard GET stalls; how long until the
    loader fails, and does the error name the shard."""
    from loaders import make_loader
    from shards import openers

    for name, value in defaults.items():
        setattr(openers, name, value)
    proxy.clear()
    proxy.stall_s = 600.0
    proxy.inject("stall", times=10_000)
    started = time.monotonic()
    try:
        list(make_loader(root, batch_size=16, workers=0, endpoint=proxy.url))
    except OSError as exc:
        seconds = time.monotonic() - started
        print(f"stalled endpoint: failed after {seconds:.0f} s (deadline {openers.DEADLINE_S:.0f} s,"
              f" read timeout {openers.READ_TIMEOUT_S:.0f} s): {exc}")
        return ".tar" in str(exc) and seconds < openers.DEADLINE_S + openers.READ_TIMEOUT_S + 5
    print("stalled endpoint: the read did not fail")
    return False


def verify_cost(pairs: int = 2000, size: int = 96, epochs: int = 2) -> None:
    from loaders import make_loader, synthetic

    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic.pair_set(tmp, counts=(pairs // 8,) * 8, size=size)
        for verify in (None, "sha256"):
            loader = make_loader(root, batch_size=64, workers=2, verify=verify)
            list(loader)   # warm: workers started, page cache filled
            started = time.monotonic()
            for _ in range(epochs):
                list(loader)
            per_epoch = (time.monotonic() - started) / epochs
            loader.close()
            print(f"verify={verify!s:6s}: {per_epoch:.2f} s per epoch of {pairs} {size}px pairs "
                  f"(2 workers, local, page cache warm)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--every", type=int, default=4, help="fault every N-th shard GET")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ok = soak(args.epochs, args.every, args.workers)
    verify_cost()
    print("soak: PASSED" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
