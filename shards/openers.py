"""Opening shard sets by URL: local paths and brace patterns, ``file://``, ``http(s)://``, ``s3://``.

* Local paths and ``file://`` URLs open directly; ``{000000..000009}`` brace patterns expand.
* ``http(s)://`` streams with ``urllib`` (no extra dependency; a 404 is a missing object).
* ``s3://`` goes through fsspec/s3fs. The endpoint comes from ``endpoint_url=`` or the
  ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` environment variables (any S3-compatible store);
  credentials come from botocore's usual chain (environment, ``~/.aws/credentials``,
  ``~/.aws/config``, instance roles).

Remote reads have one retry layer, this one: opening and every read of a stream retry transient
failures (connection refused or reset, timeouts, truncated bodies, HTTP 5xx/429) with exponential
backoff, at most ``RETRIES`` attempts and ``DEADLINE_S`` seconds per operation; each retry is
logged once (URL, attempt, cause) and counted (``take_retry_events``). Connect and read timeouts
are set here once (``CONNECT_TIMEOUT_S``, ``READ_TIMEOUT_S``) and s3fs's and botocore's own
retries are turned off, so the layers do not multiply: a stalled endpoint fails within about
``DEADLINE_S`` with the object's name. A missing object raises ``FileNotFoundError`` naming the URL
at once; missing credentials a ``PermissionError`` saying so.
``register_gopen()`` adds an ``s3`` handler to webdataset's ``gopen`` (done at import when
webdataset is already loaded), so stock ``webdataset.WebDataset(["s3://bucket/x.tar"])`` works.
A shard set's URLs come from its manifest (``manifest.shard_urls``), whose shard names are plain
names: ``pipe:`` URLs or paths are never built from them.
"""
from __future__ import annotations

import http.client
import io
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import braceexpand

REMOTE_SCHEMES = ("http", "https", "s3")
RETRIES = 5              # attempts in all per operation, for transient errors
BACKOFF_S = 0.25         # first wait; doubles each attempt
DEADLINE_S = 60.0        # no operation (an open, one read) retries past this many seconds
CONNECT_TIMEOUT_S = 5.0  # per attempt
READ_TIMEOUT_S = 10.0    # per attempt: the longest silence of a server before it counts as a stall
HTTP_TIMEOUT_S = READ_TIMEOUT_S
S3_BLOCK_SIZE = 8 << 20  # streaming reads: few large range requests

log = logging.getLogger("shards.openers")


_retry_events: list[dict] = []   # this process's retries, until taken (loader statistics)


def take_retry_events() -> list[dict]:
    """The retries made in this process since the last call: ``{"url", "attempt", "cause"}``."""
    taken = list(_retry_events)
    _retry_events.clear()
    return taken


class TransientError(OSError):
    """A failure worth retrying (network, throttling, server errors)."""


# --- URL helpers -------------------------------------------------------------------------------

def scheme(url: str) -> str:
    parsed = urllib.parse.urlparse(str(url))
    # One-letter "schemes" are Windows drive letters, i.e. local paths.
    return parsed.scheme.lower() if len(parsed.scheme) > 1 else ""


def local_path(url) -> str | None:
    """The filesystem path for a local path or ``file://`` URL; None for remote URLs."""
    url = os.fspath(url)
    kind = scheme(url)
    if kind == "":
        return url
    if kind == "file":
        return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return None


def join_url(root, name: str) -> str:
    """``root`` + ``/`` + ``name`` for paths and URLs alike; ``file://`` roots give plain paths
    (which every reader, DALI included, understands)."""
    root = os.fspath(root)
    path = local_path(root)
    if path is not None:
        return os.path.join(path, name)
    return root.rstrip("/") + "/" + name


def expand_urls(pattern) -> list[str]:
    """Expand ``{000000..000009}`` and ``{a,b}`` brace patterns (webdataset's shard notation)."""
    if isinstance(pattern, (list, tuple)):
        return [u for p in pattern for u in expand_urls(p)]
    return list(braceexpand.braceexpand(os.fspath(pattern)))


def endpoint_url(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def s3_filesystem(endpoint: str | None = None):
    """An s3fs filesystem for the configured endpoint (instances are cached by fsspec), with
    this module's timeouts and without retries of its own (``with_retries`` is the one layer)."""
    import s3fs

    endpoint = endpoint_url(endpoint)
    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    config = {"connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
              "retries": {"total_max_attempts": 1, "mode": "standard"}}
    fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, config_kwargs=config)
    fs.retries = 1   # s3fs's own loop around each call (a class attribute, not an argument)
    return fs


def filesystem(url, *, endpoint: str | None = None):
    """``(fsspec filesystem, path)`` for any supported URL."""
    import fsspec

    url = os.fspath(url)
    path = local_path(url)
    if path is not None:
        return fsspec.filesystem("file"), path
    kind = scheme(url)
    if kind == "s3":
        return s3_filesystem(endpoint), url[len("s3://"):]
    if kind in ("http", "https"):
        return fsspec.filesystem(kind), url
    raise ValueError(f"{url}: unsupported URL scheme {kind!r} (use a path, file://, http(s)://, s3://)")


# --- opening with retries ----------------------------------------------------------------------

def open_url(url, mode: str = "rb", *, endpoint: str | None = None, retries: int | None = None):
    """A binary file-like object for ``url`` (read: streaming; write: local and s3 only)."""
    url = os.fspath(url)
    if mode not in ("rb", "wb"):
        raise ValueError(f"{url}: mode must be 'rb' or 'wb', got {mode!r}")
    path = local_path(url)
    if path is not None:
        try:
            return open(path, mode)
        except FileNotFoundError:
            raise FileNotFoundError(f"{url}: no such file") from None
    kind = scheme(url)
    if kind in ("http", "https"):
        if mode != "rb":
            raise ValueError(f"{url}: http(s) URLs are read-only")
        return with_retries(lambda: _open_http(url), url, retries)
    if kind == "s3":
        fs = s3_filesystem(endpoint)
        opened = with_retries(lambda: _open_s3(fs, url, mode), url, retries)
        return _RetryingS3Reader(fs, url, opened) if mode == "rb" else opened
    raise ValueError(f"{url}: unsupported URL scheme {kind!r} (use a path, file://, http(s)://, s3://)")


def read_bytes(url, *, endpoint: str | None = None) -> bytes:
    with open_url(url, endpoint=endpoint) as stream:
        return stream.read()


def with_retries(action, url: str, retries: int | None = None, *, recover=None):
    """Run ``action()``; retry transient errors with exponential backoff (``recover()`` first,
    e.g. to reopen a stream), at most ``retries`` attempts and ``DEADLINE_S`` seconds; re-raise
    the rest. The final error names the URL, the attempts and the last cause."""
    attempts = RETRIES if retries is None else max(1, retries)
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            if attempt > 1 and recover is not None:
                recover()
            return action()
        except Exception as exc:  # noqa: BLE001 - classified just below
            error = classify(exc, url)
            if not isinstance(error, TransientError):
                raise error from exc
            wait = BACKOFF_S * 2 ** (attempt - 1)
            spent = time.monotonic() - started
            if attempt == attempts or spent + wait > DEADLINE_S:
                raise TransientError(f"{error} (gave up after {attempt} attempts in "
                                     f"{spent:.1f} s)") from exc
            note_retry(url, attempt, error)
            time.sleep(wait)
    raise AssertionError("unreachable")


def note_retry(url: str, attempt: int, cause) -> None:
    """Log a retry once and count it."""
    cause = str(cause).replace(f"{url}: ", "")
    log.warning("retrying %s (attempt %d failed: %s)", url, attempt, cause)
    _retry_events.append({"url": url, "attempt": attempt, "cause": cause})


def classify(exc: BaseException, url: str) -> BaseException:
    """Map a library error to FileNotFoundError / PermissionError / TransientError / itself."""
    if isinstance(exc, urllib.error.HTTPError):
        if exc.code in (404, 410):
            return FileNotFoundError(f"{url}: no such object (HTTP {exc.code})")
        if exc.code in (401, 403):
            return PermissionError(f"{url}: access denied (HTTP {exc.code})")
        if exc.code == 429 or exc.code >= 500:
            return TransientError(f"{url}: HTTP {exc.code} {exc.reason}")
        return OSError(f"{url}: HTTP {exc.code} {exc.reason}")
    if isinstance(exc, FileNotFoundError):
        return FileNotFoundError(f"{url}: no such object")
    if isinstance(exc, PermissionError):
        return PermissionError(f"{url}: access denied ({exc})")
    if isinstance(exc, TransientError):
        return exc
    if isinstance(exc, (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout)):
        return TransientError(f"{url}: {exc}")
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return PermissionError(f"{url}: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
                               f"AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws)")
    if name in ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                "ConnectTimeoutError", "ClientOSError", "ServerDisconnectedError",
                "ClientPayloadError", "ResponseStreamingError", "IncompleteRead",
                "ContentLengthError", "ServerTimeoutError", "ClientConnectionError",
                "IncompleteReadError", "ProtocolError", "TimeoutError"):
        return TransientError(f"{url}: {name}: {exc}")
    if name == "ClientError":   # botocore: throttling and server errors are worth another try
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("SlowDown", "Throttling", "ServiceUnavailable", "InternalError", "503",
                    "500", "502", "504", "RequestTimeout"):
            return TransientError(f"{url}: {exc}")
    if type(exc) is OSError:  # s3fs turns unexpected service errors into plain OSError
        return TransientError(f"{url}: {exc}")
    return exc


def _http_request(url: str, start: int = 0):
    headers = {"User-Agent": "mammo-pairs-shards"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)  # noqa: S310 - http(s) only


def _open_http(url: str):
    return io.BufferedReader(_ResumingHTTPStream(url, _http_request(url)), buffer_size=1 << 20)


class _ResumingHTTPStream(io.RawIOBase):
    """An HTTP body that survives a dropped connection: it reopens with ``Range: bytes=<pos>-``
    (with backoff) and carries on, so a long shard stream does not die on one network blip."""

    def __init__(self, url: str, response):
        super().__init__()
        self.url = url
        self._response = response
        self._pos = 0
        length = response.headers.get("Content-Length")
        self._length = int(length) if length is not None else None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                if self._response is None:
                    self._reopen()
                n = self._response.readinto(buffer)
                if n == 0 and len(buffer) and self._length is not None and self._pos < self._length:
                    raise ConnectionError(f"connection closed at byte {self._pos} of {self._length}")
                self._pos += n
                return n
            except (OSError, http.client.HTTPException) as exc:
                if isinstance(exc, (FileNotFoundError, PermissionError, _NotResumable)):
                    raise
                attempt += 1
                wait = BACKOFF_S * 2 ** (attempt - 1)
                spent = time.monotonic() - started
                if attempt >= RETRIES or spent + wait > DEADLINE_S:
                    raise TransientError(f"{self.url}: {exc} (gave up after {attempt} attempts "
                                         f"in {spent:.1f} s)") from exc
                note_retry(self.url, attempt, exc)
                if self._response is not None:
                    self._response.close()
                    self._response = None
                time.sleep(wait)

    def _reopen(self) -> None:
        try:
            response = _http_request(self.url, self._pos)
        except Exception as exc:  # noqa: BLE001 - classified: transient ones are retried
            raise classify(exc, self.url) from exc
        if self._pos and response.status != 206:
            response.close()
            raise _NotResumable(f"{self.url}: server ignored the Range request (HTTP "
                                f"{response.status}); cannot resume the stream")
        self._response = response

    def close(self) -> None:
        try:
            if self._response is not None:
                self._response.close()
        finally:
            super().close()


class _NotResumable(OSError):
    """The server cannot continue a broken stream (no Range support)."""


class _RetryingS3Reader(io.RawIOBase):
    """An S3 object read through the retry layer: a read that fails transiently (reset,
    truncated body, timeout, 5xx) reopens the object at the same position and carries on."""

    def __init__(self, fs, url: str, opened):
        super().__init__()
        self.fs, self.url, self._file, self._pos = fs, url, opened, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._file.seek(offset, whence)
        return self._pos

    def _reopen(self) -> None:
        try:
            self._file.close()
        except Exception:  # noqa: BLE001 - the broken stream is dropped anyway
            pass
        self._file = _open_s3(self.fs, self.url, "rb")
        self._file.seek(self._pos)

    def read(self, n: int = -1) -> bytes:
        def attempt():
            data = self._file.read(n)
            self._pos += len(data)
            return data
        return with_retries(attempt, self.url, recover=self._reopen)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            super().close()


def _open_s3(fs, url: str, mode: str):
    path = url[len("s3://"):]
    if mode == "rb":
        return fs.open(path, "rb", block_size=S3_BLOCK_SIZE, cache_type="readahead")
    return fs.open(path, "wb")


# --- webdataset gopen -------------------------------------------------------------------------

def gopen_s3(url, mode="rb", bufsize=8192, **kw):
    """webdataset gopen handler for ``s3://`` URLs (fsspec stream, retried open)."""
    return open_url(url, mode)


def register_gopen() -> None:
    """Make webdataset's gopen open ``s3://`` URLs through fsspec (idempotent)."""
    import importlib

    # ``webdataset.gopen`` the attribute is the function; the module holds the table.
    importlib.import_module("webdataset.gopen").gopen_schemes["s3"] = gopen_s3


# webdataset imports torch (about 2 s and 600 MB per process): register now only when it is
# already loaded, so that writers and Dask workers which never read through webdataset stay lean.
if "webdataset" in sys.modules:
    register_gopen()
