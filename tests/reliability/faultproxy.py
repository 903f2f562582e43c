"""A fault-injecting HTTP proxy in front of the moto S3 server: connection resets, 5xx answers,
truncated bodies and stalls on chosen GET requests, everything else passed through unchanged.

``fault_proxy`` is the pytest fixture (import it into a test module); ``FaultProxy`` can also be
started on its own (the soak run does)."""
from __future__ import annotations

import http.client
import http.server
import itertools
import socket
import struct
import threading
import urllib.parse

import pytest

FAULTS = ("reset", "503", "truncate", "stall")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


class FaultProxy:
    """``url``: the endpoint to give readers. ``inject(kind, times=1, match=".tar")`` faults the
    next ``times`` matching GETs; ``every(n, kinds)`` faults every ``n``-th matching GET, cycling
    through ``kinds``; ``clear()`` stops faulting. ``applied`` counts faults per kind and
    ``requests`` the matching GETs seen."""

    def __init__(self, upstream: str, stall_s: float = 30.0):
        self.upstream = urllib.parse.urlparse(upstream)
        self.stall_s = stall_s
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.applied = {kind: 0 for kind in FAULTS}
        self.requests = 0
        self.clear()
        proxy = self

        class Handler(_Forwarder):
            owner = proxy

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def inject(self, kind: str, times: int = 1, match: str = ".tar") -> None:
        assert kind in FAULTS, kind
        with self.lock:
            self._queue += [kind] * times
            self._match = match

    def every(self, n: int, kinds=FAULTS, match: str = ".tar") -> None:
        with self.lock:
            self._every, self._cycle, self._match = n, itertools.cycle(kinds), match

    def clear(self) -> None:
        self._queue, self._every, self._cycle, self._match = [], 0, None, ".tar"

    def choose(self, method: str, path: str) -> str | None:
        """The fault for this request, if any (counted)."""
        with self.lock:
            if method != "GET" or self._match not in urllib.parse.urlparse(path).path:
                return None
            self.requests += 1
            kind = None
            if self._queue:
                kind = self._queue.pop(0)
            elif self._every and self.requests % self._every == 0:
                kind = next(self._cycle)
            if kind is not None:
                self.applied[kind] += 1
            return kind

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _Forwarder(http.server.BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        fault = self.owner.choose(self.command, self.path)
        if fault == "reset":
            return self._reset()
        if fault == "stall":   # say nothing for longer than any sane read timeout
            self.owner.stop.wait(self.owner.stall_s)
            return self._reset()
        if fault == "503":
            text = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable"
                    b"</Code><Message>injected</Message></Error>")
            self.send_response(503)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        up = self.owner.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_HEADERS and name.lower() != "content-length":
                self.send_header(name, value)
        # HEAD: the object's length as the server gave it (there is no body)
        self.send_header("Content-Length", response.getheader("Content-Length", "0")
                         if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if fault == "truncate" and len(data) > 1:   # promise all, send half, hang up
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            return self._reset()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _reset(self):
        """Drop the connection with a TCP reset."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


@pytest.fixture
def fault_proxy(s3_server, monkeypatch):
    """A ``FaultProxy`` in front of the moto server, with the reader's timeouts, backoff and
    deadline shortened so that faults play out in seconds."""
    from shards import openers

    monkeypatch.setattr(openers, "BACKOFF_S", 0.01)
    monkeypatch.setattr(openers, "CONNECT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(openers, "READ_TIMEOUT_S", 1.0)
    monkeypatch.setattr(openers, "DEADLINE_S", 6.0)
    proxy = FaultProxy(s3_server.endpoint_url, stall_s=20.0)
    yield proxy
    proxy.close()
