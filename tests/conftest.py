"""Shared test fixtures: loopback object storage (moto S3) and a static HTTP server.

Servers listen on 127.0.0.1 only; nothing reaches the network.
"""
from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- S3 (moto) -------------------------------------------------------------------------------

@dataclass
class S3Server:
    endpoint_url: str
    env: dict = field(default_factory=dict)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def new_bucket(self, prefix: str = "bucket") -> str:
        """Create a bucket with a fresh name (3+ characters, DNS-safe) and return it."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def _moto_endpoint():
    pytest.importorskip("moto.server")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_server(_moto_endpoint, monkeypatch, tmp_path):
    """A moto S3 server on 127.0.0.1; the AWS environment points at it for this test.

    ``s3_server.env`` holds the variables (endpoint, "testing" credentials, us-east-1) for
    subprocesses; AWS config files are pointed at empty paths so the host's never leak in.
    """
    env = {
        "AWS_ENDPOINT_URL": _moto_endpoint,
        "AWS_ENDPOINT_URL_S3": _moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _clear_fsspec_cache()
    yield S3Server(_moto_endpoint, env)
    _clear_fsspec_cache()


def _clear_fsspec_cache():
    try:
        import s3fs
    except ImportError:
        return
    s3fs.S3FileSystem.clear_instance_cache()


# --- HTTP ------------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def http_server():
    """``start(root) -> base URL``: serve a folder read-only over HTTP on 127.0.0.1."""
    servers = []

    def start(root) -> str:
        handler = functools.partial(_QuietHandler, directory=os.fspath(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    """A small pair shard set over three shards of uneven size (5, 7, 3 samples)."""
    from loaders import synthetic

    return synthetic.pair_set(tmp_path_factory.mktemp("pairs"), counts=(5, 7, 3))
