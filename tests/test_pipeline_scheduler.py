"""build-shards on an existing Dask cluster (--scheduler) gives the local run's manifest."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.config import BuildConfig
from ingest.pipeline import build_shards
from shards.manifest import content_digest, read_manifest

DASK = Path(sys.executable).with_name("dask")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cluster(tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; all killed at the end."""
    if not DASK.exists():
        pytest.skip("the dask command is not installed")
    info = tmp_path / "scheduler.json"
    procs = []
    logs = []

    def start(*args):
        log = open(tmp_path / f"dask-{len(procs)}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT,
                                      cwd=REPO))

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(info))
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, (tmp_path / "dask-0.log").read_text()
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            start("worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                  "--host", "127.0.0.1")
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for log in logs:
            log.close()


def test_scheduler_run_matches_local_run(cluster, tmp_path):
    from ingest.synth import generate

    root = tmp_path / "data"
    generate(layout="optimam", patients=2, out=str(root), seed=11, image_size=(320, 256),
             lesion_fraction=0.5, progress=False)

    def config(name, **kw):
        return BuildConfig(dataset="optimam", root=str(root), out=str(tmp_path / name),
                           cache_dir=str(tmp_path / f"cache-{name}"), size=64,
                           out_shape=(192, 160), shard_size=8, progress=False, **kw)

    remote = build_shards(config("remote", scheduler=cluster))
    local = build_shards(config("local", workers=1))
    assert remote["pairs"]["registered"] == local["pairs"]["registered"] > 0
    assert remote["samples"]["total"] > 0
    assert content_digest(read_manifest(str(tmp_path / "remote"))) == \
        content_digest(read_manifest(str(tmp_path / "local")))
