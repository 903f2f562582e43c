"""``manifest.json``: what a shard set holds, written last and atomically by the build's driver.

Fields::

    format_version   schema.FORMAT_VERSION
    params           build parameters (JSON), as given by the build
    params_hash      sha256 of the canonical JSON of params
    splits           {split: {"shards": [record, ...], "shard_count", "samples", "bytes"}}
                     record = {"name", "split", "index", "samples", "bytes", "sha256", "index_name"}
    totals           {"shards", "samples", "bytes"} over all splits
    created          UTC time (ISO 8601)                 } ignored by content_digest(), so two
    software         python, numpy, webdataset, ... versions } byte-identical builds compare equal
    ...              any ``extra`` keys the build adds

Readers trust the manifest's counts; ``shards verify`` re-checks them against the tars. Shard
names are plain file names: a manifest naming ``pipe:...``, ``a/b.tar`` or ``..`` is rejected, so
a manifest can never make a reader run a command or leave the shard set's root.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from importlib import metadata as _metadata

from shards import openers, schema
from shards import publish

MANIFEST_NAME = "manifest.json"
VOLATILE_KEYS = ("created", "software")   # differ between identical builds
RESERVED_KEYS = ("format_version", "params", "params_hash", "splits", "totals") + VOLATILE_KEYS
RECORD_KEYS = ("name", "split", "index", "samples", "bytes", "sha256", "index_name")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A manifest that is unreadable, inconsistent or unsafe; the message names its URL."""


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def params_hash(params: dict) -> str:
    return hashlib.sha256(canonical_json(params)).hexdigest()


def content_digest(manifest: dict) -> str:
    """sha256 of the manifest without its volatile keys: equal for byte-identical builds."""
    return hashlib.sha256(canonical_json(
        {k: v for k, v in manifest.items() if k not in VOLATILE_KEYS})).hexdigest()


def software_versions() -> dict:
    versions = {"python": platform.python_version()}
    for module, dist in (("numpy", "numpy"), ("webdataset", "webdataset"), ("pydicom", "pydicom"),
                         ("mammo-pairs", "mammo-pairs")):
        try:
            versions[module] = _metadata.version(dist)
        except _metadata.PackageNotFoundError:
            pass
    return versions


def check_name(name, where: str = "manifest") -> str:
    """A plain file name: no scheme (``pipe:``), no directories, no ``..``."""
    if (not isinstance(name, str) or not _PLAIN_NAME.match(name) or ".." in name
            or ":" in name or "/" in name or "\\" in name):
        raise ManifestError(f"{where}: unsafe shard name {name!r} (plain file names only)")
    return name


def build_manifest(records, params: dict, *, extra: dict | None = None) -> dict:
    """Merge shard records (from parallel ``write_shard`` calls, any order) into a manifest."""
    by_split: dict[str, list[dict]] = {}
    seen: set[str] = set()
    for record in records:
        missing = [k for k in RECORD_KEYS if k not in record]
        if missing:
            raise ManifestError(f"shard record {record.get('name', '?')} lacks {', '.join(missing)}")
        record = {k: record[k] for k in RECORD_KEYS}
        _check_record(record, "records")
        if record["name"] in seen:
            raise ManifestError(f"records: shard {record['name']} appears twice")
        seen.add(record["name"])
        by_split.setdefault(record["split"], []).append(record)
    order = sorted(by_split, key=lambda s: (schema.SPLITS.index(s) if s in schema.SPLITS
                                            else len(schema.SPLITS), s))
    splits = {}
    for split in order:
        shards = sorted(by_split[split], key=lambda r: r["index"])
        splits[split] = {"shards": shards, "shard_count": len(shards),
                         "samples": sum(r["samples"] for r in shards),
                         "bytes": sum(r["bytes"] for r in shards)}
    manifest = {
        "format_version": schema.FORMAT_VERSION,
        "params": params,
        "params_hash": params_hash(params),
        "splits": splits,
        "totals": {"shards": sum(s["shard_count"] for s in splits.values()),
                   "samples": sum(s["samples"] for s in splits.values()),
                   "bytes": sum(s["bytes"] for s in splits.values())},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "software": software_versions(),
    }
    for key, value in (extra or {}).items():
        if key in RESERVED_KEYS:
            raise ManifestError(f"extra manifest key {key!r} is reserved")
        manifest[key] = value
    json.dumps(manifest)  # fail here, not half-way through writing, on non-JSON params
    return manifest


def dumps(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode("utf-8")


def write_manifest(out, manifest: dict) -> str:
    """Write ``manifest.json`` atomically under ``out`` (local dir or URL); returns its URL."""
    validate(manifest, os.fspath(out))
    data = dumps(manifest)
    out = os.fspath(out)
    local = openers.local_path(out)
    if local is not None:
        os.makedirs(local, exist_ok=True)
        path = os.path.join(local, MANIFEST_NAME)
        publish.write_bytes(path, data)
        return path
    fs, root = openers.filesystem(out)
    staging = tempfile.mkdtemp(prefix="manifest-")
    try:
        tmp = os.path.join(staging, MANIFEST_NAME)
        with open(tmp, "wb") as f:
            f.write(data)
        fs.put_file(tmp, f"{root.rstrip('/')}/{MANIFEST_NAME}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return openers.join_url(out, MANIFEST_NAME)


def root_of(root_or_url) -> str:
    """The shard set's root for a root or a ``.../manifest.json`` URL."""
    text = os.fspath(root_or_url)
    if text.rstrip("/").endswith("/" + MANIFEST_NAME) or text == MANIFEST_NAME:
        return text.rstrip("/")[: -len(MANIFEST_NAME)].rstrip("/") or "."
    return text


def manifest_url(root_or_url) -> str:
    return openers.join_url(root_of(root_or_url), MANIFEST_NAME)


def read_manifest(root_or_url, *, endpoint: str | None = None) -> dict:
    """Read and validate the manifest of a shard set (local path or URL)."""
    url = manifest_url(root_or_url)
    try:
        raw = openers.read_bytes(url, endpoint=endpoint)
    except FileNotFoundError:
        raise FileNotFoundError(f"{url}: no manifest (not a shard set, or its build did not finish)") from None
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{url}: unreadable JSON ({exc})") from None
    validate(manifest, url)
    return manifest


def split_shards(manifest: dict, split: str, where: str) -> list[dict]:
    """The shard records of one split; ``KeyError`` naming the splits there are."""
    if split not in manifest["splits"]:
        raise KeyError(f"{where}: manifest has no split {split!r} (has {sorted(manifest['splits'])})")
    return manifest["splits"][split]["shards"]


def shard_urls(root_or_url, split: str, *, endpoint: str | None = None) -> list[str]:
    """URLs of a split's shards, in manifest order (the manifest names are checked plain names)."""
    root = root_of(root_or_url)
    shards = split_shards(read_manifest(root, endpoint=endpoint), split, root)
    return [openers.join_url(root, shard["name"]) for shard in shards]


def index_urls(root_or_url, split: str, *, endpoint: str | None = None) -> list[str]:
    """URLs of a split's DALI index files, parallel to ``shard_urls``."""
    root = root_of(root_or_url)
    shards = split_shards(read_manifest(root, endpoint=endpoint), split, root)
    missing = [s["name"] for s in shards if not s.get("index_name")]
    if missing:
        raise FileNotFoundError(f"{root}: shards without a DALI index: {', '.join(missing[:5])}")
    return [openers.join_url(root, s["index_name"]) for s in shards]


def validate(manifest: dict, where: str) -> None:
    """Structure, safe names and internally consistent totals; raises ManifestError."""
    if not isinstance(manifest, dict):
        raise ManifestError(f"{where}: manifest is not a JSON object")
    version = manifest.get("format_version")
    if version != schema.FORMAT_VERSION:
        raise ManifestError(f"{where}: format_version {version!r}, this code reads "
                            f"{schema.FORMAT_VERSION}")
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise ManifestError(f"{where}: no splits")
    total = {"shards": 0, "samples": 0, "bytes": 0}
    names: set[str] = set()
    for split, entry in splits.items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list):
            raise ManifestError(f"{where}: split {split!r} has no shard list")
        for record in shards:
            if not isinstance(record, dict) or record.get("split") != split:
                raise ManifestError(f"{where}: split {split!r} lists a shard of another split")
            _check_record(record, where)
            if record["name"] in names:
                raise ManifestError(f"{where}: shard {record['name']} is listed twice")
            names.add(record["name"])
        for field in ("samples", "bytes"):
            if entry.get(field) != sum(r[field] for r in shards):
                raise ManifestError(f"{where}: split {split!r}: {field} does not add up")
        total["shards"] += len(shards)
        total["samples"] += entry["samples"]
        total["bytes"] += entry["bytes"]
    if manifest.get("totals") != total:
        raise ManifestError(f"{where}: totals {manifest.get('totals')} do not add up to {total}")


def _check_record(record: dict, where: str) -> None:
    check_name(record.get("name"), where)
    if record.get("index_name") is not None:
        check_name(record["index_name"], where)
    if not record["name"].endswith(".tar"):
        raise ManifestError(f"{where}: shard name {record['name']!r} does not end in .tar")
    for field in ("index", "samples", "bytes"):
        if not isinstance(record.get(field), int) or record[field] < 0:
            raise ManifestError(f"{where}: {record['name']}: {field} is {record.get(field)!r}")
    if not isinstance(record.get("sha256"), str) or not _SHA256.match(record["sha256"]):
        raise ManifestError(f"{where}: {record['name']}: sha256 is {record.get('sha256')!r}")


def all_shards(manifest: dict) -> list[dict]:
    return [r for entry in manifest["splits"].values() for r in entry["shards"]]
