"""What a shard set holds: counts per split, abnormal-area and background distributions, bytes per
sample, and a contact sheet of random pairs (windowed to 8 bits for viewing only).

Counts and bytes come from the manifest; the distributions from each sample's ``json`` (the
image members are skipped unless picked for the contact sheet). ``max_samples`` bounds the scan.
"""
from __future__ import annotations

import json
import random

import numpy as np

from shards import manifest as manifest_mod, openers, samples, schema

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def collect(root, *, max_samples: int | None = None, preview_count: int = 0, seed: int = 0,
            endpoint: str | None = None) -> dict:
    """Scan the shard set; returns {"manifest", "splits": {split: {...}}, "preview": [samples]}."""
    root = manifest_mod.root_of(str(root))
    data = manifest_mod.read_manifest(root, endpoint=endpoint)
    rng = random.Random(seed)
    reservoir: list[dict] = []
    seen = 0
    splits = {}
    for split, entry in data["splits"].items():
        values = {"area": [], "background": [], "labels": {}}
        for record in entry["shards"]:
            if max_samples is not None and seen >= max_samples:
                break
            url = openers.join_url(root, record["name"])
            for sample in samples.iter_samples(url, endpoint=endpoint):
                meta = json.loads(sample["json"])
                if meta.get("kind") == "pair":
                    values["area"].append(float(meta["area"]["pair"]))
                    values["background"].append(float(max(meta["background"].values())))
                else:
                    label = str(meta.get("label_name", meta.get("label")))
                    values["labels"][label] = values["labels"].get(label, 0) + 1
                seen += 1
                if preview_count and meta.get("kind") == "pair":
                    # Reservoir sampling: a uniform pick without holding every sample.
                    slot = len(reservoir) if len(reservoir) < preview_count else rng.randrange(seen)
                    if slot < preview_count:
                        sample = dict(sample, __where__=record["name"])
                        if slot == len(reservoir):
                            reservoir.append(sample)
                        else:
                            reservoir[slot] = sample
                if max_samples is not None and seen >= max_samples:
                    break
        splits[split] = {
            "shards": entry["shard_count"], "samples": entry["samples"], "bytes": entry["bytes"],
            "bytes_per_sample": entry["bytes"] / entry["samples"] if entry["samples"] else 0.0,
            "scanned": len(values["area"]) + sum(values["labels"].values()),
            "area": quantiles(values["area"]), "background": quantiles(values["background"]),
            "area_histogram": histogram(values["area"], (0, 1e-9, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)),
            "background_histogram": histogram(values["background"],
                                              (0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)),
            "labels": values["labels"],
        }
    return {"root": root, "manifest": data, "splits": splits, "preview": reservoir}


def quantiles(values) -> dict:
    if not values:
        return {}
    q = np.quantile(np.asarray(values, dtype=np.float64), QUANTILES)
    return {f"q{int(p * 100):02d}": float(v) for p, v in zip(QUANTILES, q)}


def histogram(values, edges) -> list[tuple[str, int]]:
    """Counts in ``[e_i, e_{i+1})`` bins (the last closed); the first bin ``[0, 1e-9)`` is "0"."""
    if not values:
        return []
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64), bins=np.asarray(edges))
    labels = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])]
    labels[-1] = labels[-1][:-1] + "]"
    return list(zip(labels, (int(c) for c in counts)))


def format_report(result: dict) -> str:
    lines = [f"shard set {result['root']}"]
    total = result["manifest"]["totals"]
    lines.append(f"  total: {total['shards']} shards, {total['samples']} samples, "
                 f"{total['bytes']} bytes")
    for split, s in result["splits"].items():
        lines.append(f"{split}: {s['shards']} shards, {s['samples']} samples, "
                     f"{s['bytes_per_sample']:.0f} bytes/sample (scanned {s['scanned']})")
        for name in ("area", "background"):
            if s[name]:
                q = "  ".join(f"{k}={v:.3g}" for k, v in s[name].items())
                lines.append(f"  {name:10s} {q}")
                width = max(n for _, n in s[f"{name}_histogram"]) or 1
                for label, n in s[f"{name}_histogram"]:
                    lines.append(f"    {label:>14s} {n:8d} {'#' * round(30 * n / width)}")
        if s["labels"]:
            lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(s["labels"].items())))
    return "\n".join(lines)


# --- contact sheet ---------------------------------------------------------------------------

def window_to_uint8(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """Display window for viewing only: percentiles of the non-zero pixels mapped to 0..255."""
    values = image[image > 0]
    if values.size == 0:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(values, (low_pct, high_pct))
    scaled = (image.astype(np.float32) - lo) / max(float(hi - lo), 1.0)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def contact_sheet(samples: list[dict], path, *, tile: int = 128, columns: int = 4) -> int:
    """Write a PNG grid of pairs (left | right, one shared window per pair); returns pairs drawn."""
    from PIL import Image

    pairs = [schema.decode_pair({k: v for k, v in s.items() if k != "__where__"},
                                where=s.get("__where__", "")) for s in samples]
    if not pairs:
        raise ValueError("no pair samples to draw")
    rows = -(-len(pairs) // columns)
    gap = 4
    sheet = Image.new("L", (columns * (2 * tile + 3 * gap), rows * (tile + gap) + gap), 32)
    for i, pair in enumerate(pairs):
        both = window_to_uint8(np.concatenate([pair.left, pair.right], axis=1))
        image = Image.fromarray(both).resize((2 * tile, tile), Image.BILINEAR)
        x = (i % columns) * (2 * tile + 3 * gap) + gap
        y = (i // columns) * (tile + gap) + gap
        sheet.paste(image, (x, y))
    sheet.save(path)
    return len(pairs)
