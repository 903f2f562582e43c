"""``report.json``: what a build read, used and rejected (with reasons), and where time went.

Counts are in images and add up: ``images.read == images.used + images.rejected``, where the
rejected images are the adapter's skips, the images without a contralateral partner (or
duplicates), and both images of every rejected pair. Each rejection is listed with its stage,
reason and detail (and the quality figures for a pair below the registration threshold).
Annotations kept but changed (a box clipped to its image) are listed under ``adjusted``.
``images.sources`` (the ``dicom`` adapter) counts the images kept per place their patient,
study, laterality and view were found (a tag's keyword, ``filename``, ``folder``, ...).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from contextlib import contextmanager

REPORT_NAME = "report.json"


class StageClock:
    """Seconds per stage inside one task: wall (``seconds``) and CPU (``cpu_seconds``).

    CPU is the task's process CPU time (``time.process_time``): what the stage cost whatever
    else runs on the machine, where wall time grows with the load.
    """

    def __init__(self):
        self.seconds: dict = {}
        self.cpu_seconds: dict = {}

    @staticmethod
    def start() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def add(self, name: str, start: tuple[float, float]) -> None:
        wall, cpu = start
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - wall
        self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu

    def result(self) -> dict:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds}
TASK_STAGES = ("decode", "normalise", "register", "cache_write", "tile", "read", "encode", "write")


class Report:
    def __init__(self, params: dict):
        self.started = time.perf_counter()
        self.data: dict = {
            "params": params,
            "images": {"read": 0, "used": 0, "rejected": 0, "reasons": {}},
            "pairs": {"formed": 0, "registered": 0, "from_cache": 0, "rejected": 0, "used": 0,
                      "alignment": {}},
            "tiles": {"total": 0, "kept": 0, "dropped": {}},
            "samples": {},
            "rejected": [],
            "adjusted": [],
            "seconds": {},
            "task_seconds": {},
            "task_cpu_seconds": {},
        }
        self._reasons: Counter = Counter()

    # --- stages -----------------------------------------------------------------------------

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.data["seconds"][name] = round(time.perf_counter() - t, 3)

    def task_seconds(self, results) -> None:
        """Add the per-task timings, summed over tasks: wall seconds inside the tasks
        (``task_seconds``) and their CPU seconds (``task_cpu_seconds``)."""
        for key, field in (("seconds", "task_seconds"), ("cpu_seconds", "task_cpu_seconds")):
            totals = self.data[field]
            for res in results:
                for name, value in (res or {}).get(key, {}).items():
                    totals[name] = round(totals.get(name, 0.0) + float(value), 3)

    # --- counts -----------------------------------------------------------------------------

    def _reject(self, item: str, stage: str, reason: str, detail: str = "", images: int = 1,
                figures: dict | None = None) -> None:
        entry = {"item": item, "stage": stage, "reason": reason, "detail": detail, "images": images}
        if figures:
            entry["figures"] = {k: v if isinstance(v, str) else round(float(v), 4)
                                for k, v in figures.items()}
        self.data["rejected"].append(entry)
        self.data["images"]["rejected"] += images
        self._reasons[reason] += images
        self.data["images"]["reasons"] = dict(sorted(self._reasons.items()))

    def exams(self, table) -> None:
        self.data["dataset"] = table.dataset
        self.data["images"]["read"] = table.read
        for skip in table.skipped:
            self._reject(skip.item, "exams", skip.reason, skip.detail)
        for note in getattr(table, "adjusted", ()):
            self.data["adjusted"].append({"item": note.item, "stage": "exams",
                                          "reason": note.reason, "detail": note.detail})
        if hasattr(table, "source_counts"):   # adapters that infer ids say where they found them
            self.data["images"]["sources"] = table.source_counts()

    def pairing(self, pairs, unpaired) -> None:
        self.data["pairs"]["formed"] = len(pairs)
        for skip in unpaired:
            self._reject(skip.item, "pairs", skip.reason, skip.detail)

    def pair_prepared(self, result: dict) -> None:
        """Count a register-stage result: newly registered or reused from the cache."""
        status = result.get("status")
        if status in ("registered", "cached"):
            self.data["pairs"]["from_cache" if status == "cached" else "registered"] += 1
            if result.get("pair_id") and result.get("entry"):
                self.data.setdefault("entries", {})[result["pair_id"]] = result["entry"]
            # which alignment the pair kept: the registered one or the pair as it came
            kept = (result.get("quality") or {}).get("alignment", "registered")
            counts = self.data["pairs"]["alignment"]
            counts[kept] = counts.get(kept, 0) + 1

    def pair_used(self, pair, result: dict) -> None:
        self.data["pairs"]["used"] += 1
        self.data["images"]["used"] += 2

    def pair_rejected(self, pair, reason: str, detail: str = "", figures: dict | None = None,
                      item: str | None = None) -> None:
        self.data["pairs"]["rejected"] += 1
        self._reject(item or pair.pair_id, "register", reason, detail, images=2, figures=figures)
        self.data["rejected"][-1]["pair"] = pair.pair_id

    def tiles(self, tiled) -> None:
        tiles = self.data["tiles"]
        dropped: Counter = Counter(tiles["dropped"])
        for res in tiled:
            if not isinstance(res, dict) or "rows" not in res:
                continue
            tiles["total"] += int(res["total"])
            tiles["kept"] += len(res["rows"])
            dropped.update(res.get("dropped", {}))
        tiles["dropped"] = dict(sorted(dropped.items()))

    def labelled(self, found) -> None:
        """Downstream builds: labelled patches found per label name."""
        counts: Counter = Counter()
        for res in found:
            for row in (res or {}).get("rows", ()):
                counts[row[6]] += 1
        self.data["patches"] = {"found": sum(counts.values()), "labels": dict(sorted(counts.items()))}

    def samples(self, manifest: dict) -> None:
        self.data["samples"] = {split: info["samples"] for split, info in manifest["splits"].items()}
        self.data["samples"]["total"] = manifest["totals"]["samples"]
        self.data["shards"] = manifest["totals"]["shards"]

    def splits(self, plan, unit: str) -> None:
        """How many patients (or patches) each split got, and a note when one is short."""
        self.data["splits"] = {unit: dict(plan.counts)}
        if plan.note:
            self.data["splits"]["note"] = plan.note
        if plan.moved:
            self.data["splits"]["moved"] = [list(m) for m in plan.moved]

    def empty(self) -> None:
        """A build with nothing to write: no manifest, and the report says so."""
        self.data["samples"] = {"total": 0}
        self.data["shards"] = 0
        self.data["empty"] = True

    def cache(self, root: str, params_hash: str) -> None:
        self.data["cache"] = {"root": root, "params_hash": params_hash}

    # --- output -----------------------------------------------------------------------------

    def finish(self) -> dict:
        total = time.perf_counter() - self.started
        self.data["seconds"]["total"] = round(total, 3)
        self.data["pairs_per_second"] = round(self.data["pairs"]["formed"] / total, 4) if total else 0.0
        images = self.data["images"]
        self.data["counts_add_up"] = images["read"] == images["used"] + images["rejected"]
        return self.data

    def write(self, out) -> str:
        from shards import publish

        self.finish()
        path = os.path.join(os.fspath(out), REPORT_NAME)
        publish.write_bytes(path, (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode())
        return path


def summary(data: dict) -> str:
    """A few lines for the terminal."""
    im, pa, ti = data["images"], data["pairs"], data["tiles"]
    lines = [
        f"images: {im['read']} read, {im['used']} used, {im['rejected']} rejected"
        + (f" ({', '.join(f'{k}: {v}' for k, v in im['reasons'].items())})" if im["reasons"] else ""),
        f"pairs: {pa['formed']} formed, {pa['registered']} registered, {pa['from_cache']} from cache, "
        f"{pa['rejected']} rejected, {pa['used']} used"
        + (f" (alignment kept: {', '.join(f'{k} {v}' for k, v in sorted(pa['alignment'].items()))})"
           if pa.get("alignment") else ""),
        f"tiles: {ti['total']} on the grid, {ti['kept']} kept"
        + (f", dropped {', '.join(f'{k}: {v}' for k, v in ti['dropped'].items())}" if ti["dropped"] else ""),
    ]
    adjusted = Counter(a["reason"] for a in data.get("adjusted", ()))
    if adjusted:
        lines.append("annotations kept but changed: "
                      + ", ".join(f"{k}: {v}" for k, v in sorted(adjusted.items())))
    if "patches" in data:   # downstream build: labelled patches instead of grid tiles
        pt = data["patches"]
        lines[-1] = f"labelled patches: {pt['found']}" + (
            f" ({', '.join(f'{k}: {v}' for k, v in pt['labels'].items())})" if pt["labels"] else "")
    if data.get("samples"):
        s = data["samples"]
        lines.append("samples: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    if data.get("splits", {}).get("note"):
        lines.append(f"splits: {data['splits']['note']}")
    if data.get("empty"):
        lines.append("no samples: nothing usable was left, manifest.json not written "
                     "(the reasons are in report.json)")
    secs = data.get("seconds", {})
    lines.append("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
    return "\n".join(lines)
