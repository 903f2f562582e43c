"""Upload a local shard set to S3-compatible storage: parallel, resumable, manifest last.

An object is skipped when the remote copy has the same size and carries the same sha256 in its
metadata (``x-amz-meta-sha256``, set by every upload). Local files are checked against the
manifest before they leave, so a damaged local shard is never published. ``manifest.json`` goes
up only after every shard and index is in place: readers (which start from the manifest) never
see a half-uploaded set.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from shards import manifest as manifest_mod, openers


@dataclass
class UploadReport:
    dest: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        state = "done" if self.ok else f"INCOMPLETE ({len(self.failed)} failed; manifest not uploaded)"
        return (f"{self.dest}: {state}: {len(self.uploaded)} uploaded "
                f"({self.bytes_uploaded} bytes), {len(self.skipped)} already there")


def upload(root, dest: str, *, workers: int = 8, endpoint: str | None = None,
           progress=None) -> UploadReport:
    """Upload ``root`` (a local shard set) to ``dest`` (``s3://bucket/prefix``)."""
    root = os.fspath(root)
    local = openers.local_path(root)
    if local is None or not os.path.isdir(local):
        raise ValueError(f"{root}: upload needs a local shard set folder")
    if openers.scheme(dest) != "s3":
        raise ValueError(f"{dest}: upload destination must be an s3:// URL")
    data = manifest_mod.read_manifest(local)
    fs, prefix = openers.filesystem(dest, endpoint=endpoint)
    prefix = prefix.rstrip("/")
    bucket = prefix.split("/", 1)[0]
    if not bucket or not fs.exists(bucket):
        raise FileNotFoundError(f"{dest}: bucket {bucket!r} does not exist or is not reachable")
    report = UploadReport(dest)
    jobs = []
    for record in manifest_mod.all_shards(data):
        jobs.append((record["name"], record["sha256"], record["bytes"]))
        if record.get("index_name"):
            jobs.append((record["index_name"], None, None))

    def one(job):
        name, sha, size = job
        try:
            return name, _upload_file(fs, os.path.join(local, name), f"{prefix}/{name}", sha, size)
        except Exception as exc:  # noqa: BLE001 - reported per object, the rest go on
            return name, exc

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for name, result in pool.map(one, jobs):
            if isinstance(result, Exception):
                report.failed.append(f"{name}: {result}")
            elif result:
                report.uploaded.append(name)
                report.bytes_uploaded += result
            else:
                report.skipped.append(name)
            if progress:
                progress(name)
    if report.ok:
        name = manifest_mod.MANIFEST_NAME
        try:
            sent = _upload_file(fs, os.path.join(local, name), f"{prefix}/{name}", None, None,
                                always=True)
            report.uploaded.append(name)
            report.bytes_uploaded += sent
        except Exception as exc:  # noqa: BLE001
            report.failed.append(f"{name}: {exc}")
    return report


def _upload_file(fs, path: str, remote: str, sha: str | None, size: int | None, *,
                 always: bool = False) -> int:
    """Upload one file unless an identical copy is there; returns bytes sent (0 when skipped)."""
    local_sha, local_size = file_sha256(path)
    if sha is not None and (local_sha != sha or local_size != size):
        raise ValueError(f"{path}: local file does not match the manifest (run `shards verify`)")
    if not always and _remote_matches(fs, remote, local_sha, local_size):
        return 0
    fs.put_file(path, remote, Metadata={"sha256": local_sha})
    return local_size


def _remote_matches(fs, remote: str, sha: str, size: int) -> bool:
    try:
        info = fs.info(remote, refresh=True)
    except FileNotFoundError:
        return False
    if int(info.get("size", -1)) != size:
        return False
    try:
        return fs.metadata(remote, refresh=True).get("sha256") == sha
    except (OSError, AttributeError):
        return False


def file_sha256(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
