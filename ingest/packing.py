"""From registered pairs to shards: tile index rows, the patch index, shard plans, shard tasks.

The driver only ever holds the patch index (one small row per kept tile pair: pair, grid
position, background and abnormal-area figures, split), never pixels. Each shard is written by
one task that reads its tiles from the zarr cache.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import zlib

import numpy as np
import pandas as pd

from ingest.cache import PairCache, PairRecord, TileReader
from ingest.report import StageClock

INDEX_COLUMNS = ("pair_id", "entry", "row", "col", "y0", "x0", "bg_left", "bg_right",
                 "a_left", "a_right", "a_pair")
PAIR_ORDER = ("pair_id", "row", "col")
PATCH_COLUMNS = ("pair_id", "entry", "side", "y0", "x0", "label", "label_name", "roi_side", "roi")
PATCH_ORDER = ("pair_id", "side", "y0", "x0", "roi_side", "roi")
_SHARD_FILE = re.compile(r"^[A-Za-z0-9_-]+-\d{6}\.(tar|idx)$")


# ------------------------------------------------------------------ tile task


def _roi_boxes(rois: list) -> np.ndarray:
    return np.array([r[:4] for r in rois], dtype=np.float64).reshape(-1, 4)


def tile_rows(entry: str, record: PairRecord, masks: np.ndarray, size: int, stride: int,
              max_background: float, max_border_xor: float) -> dict:
    """Grid tiles of one registered pair that pass the rules, as index rows (no pixels).

    ``record`` is the pair's cache attributes and ``masks`` its (2, H, W) breast masks: from
    the cache (``tile_entry``) or still in memory right after registration (``prepare_pair``).
    """
    from ingest import abnormal, tiling

    masks = np.asarray(masks, dtype=bool)
    # The rules look at the masks only (the images are checked for shape): no pixel read here.
    result = tiling.tile_pair(masks[0], masks[1], masks[0], masks[1], size=size, stride=stride,
                              max_background=max_background, max_border_xor=max_border_xor)
    boxes = result.boxes.astype(np.float64).reshape(-1, 4)
    areas = abnormal.pair_areas(boxes, _roi_boxes(record.rois["left"]),
                                _roi_boxes(record.rois["right"]))
    rows = [(record.pair_id, entry, int(result.rows[i]), int(result.cols[i]),
             int(result.boxes[i, 0]), int(result.boxes[i, 1]), float(result.background[i, 0]),
             float(result.background[i, 1]), float(areas["left"][i]), float(areas["right"][i]),
             float(areas["pair"][i])) for i in range(len(result))]
    dropped = {str(k): int(v) for k, v in result.dropped.items()}
    return {"entry": entry, "rows": rows, "total": int(result.total), "dropped": dropped}


def tile_entry(entry: str, cache: PairCache, size: int, stride: int, max_background: float,
               max_border_xor: float) -> dict:
    """``tile_rows`` of one cached pair (its attributes and masks read from the cache)."""
    clock = StageClock()
    t = clock.start()
    result = tile_rows(entry, cache.record(entry), cache.read_masks(entry), size, stride,
                       max_background, max_border_xor)
    clock.add("tile", t)
    return {**result, **clock.result()}


# ------------------------------------------------------------------ the patch index


def patients_with_tiles(tiled) -> list[str]:
    """The patients of ``[(patient, tile result), ...]`` that kept at least one tile."""
    return sorted({patient for patient, result in tiled
                   if isinstance(result, dict) and result.get("rows")})


def build_index(tiled, seed: int, split_of: dict | None = None) -> pd.DataFrame:
    """The patch index from ``[(patient, tile_entry result), ...]``; patient-level splits.

    ``split_of``: patient → split (``splits.plan_splits`` over ``patients_with_tiles``), by
    default computed here.
    """
    from ingest import splits

    if split_of is None:
        split_of = splits.plan_splits(patients_with_tiles(tiled), seed).of
    frames = []
    for patient, result in tiled:
        if not isinstance(result, dict) or "rows" not in result or not result["rows"]:
            continue
        frame = pd.DataFrame(result["rows"], columns=list(INDEX_COLUMNS))
        frame["split"] = split_of[patient]
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=list(INDEX_COLUMNS) + ["split"])
    index = pd.concat(frames, ignore_index=True)
    index = _compact(index)
    return index.sort_values(["pair_id", "row", "col"], kind="stable").reset_index(drop=True)


def _compact(index: pd.DataFrame) -> pd.DataFrame:
    """Repeated strings as categories: a few bytes per patch in the driver's index."""
    for column in ("pair_id", "entry", "side", "roi_side", "label_name", "split"):
        if column in index.columns:
            index[column] = index[column].astype("category")
    return index


def _records(rows) -> list[dict]:
    if isinstance(rows, pd.DataFrame):
        return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                for r in rows.astype(object).to_dict("records")]
    return list(rows)


def permutation_seed(seed: int, split: str) -> list[int]:
    return [int(seed), zlib.crc32(split.encode("utf-8"))]


def plan_shards(index: pd.DataFrame, seed: int, shard_size: int, order=PAIR_ORDER) -> list[dict]:
    """Per split a seeded permutation of its rows, cut into shards of ``shard_size`` samples.

    The index is sorted by ``order`` (pair, grid position) first, so the plan depends only on
    the content, not on the order in which tasks finished.
    """
    from shards.schema import SPLITS

    plans = []
    present = sorted(set(index["split"]), key=lambda s: (SPLITS.index(s) if s in SPLITS else 9, s))
    for split in present:
        rows = index[index["split"] == split].sort_values(list(order), kind="stable")
        shuffle = np.random.default_rng(permutation_seed(seed, split)).permutation(len(rows))
        rows = rows.iloc[shuffle]
        for i, start in enumerate(range(0, len(rows), int(shard_size))):
            part = rows.iloc[start:start + int(shard_size)]
            # A compact frame (categorical ids, numeric columns) travels to the task, which
            # turns it into records there: the driver never holds one dict per patch.
            plans.append({"split": split, "index": i, "rows": part.reset_index(drop=True)})
    return plans


# ------------------------------------------------------------------ shard task


def pair_meta(row: dict, attrs: PairRecord, size: int, split: str) -> dict:
    from shards import schema

    return schema.pair_meta(
        size=size, bits=attrs.bits, dataset=attrs.dataset, patient=attrs.patient,
        study=attrs.study, view=attrs.view, row=row["row"], col=row["col"], y0=row["y0"],
        x0=row["x0"], background=(row["bg_left"], row["bg_right"]),
        area=(row["a_left"], row["a_right"], row["a_pair"]), split=split, rois=attrs.rois,
        registered_side=attrs.registered_side, source=attrs.source)


WHOLE_PAIR_MIN = 16  # from this many tiles of one pair in a shard, one whole read is cheaper


def read_tiles(cache: PairCache, rows: list[dict], size: int) -> list[np.ndarray]:
    """The (2, size, size) tile pair of every row, in row order.

    A pair contributing many tiles to the shard (small datasets) is read whole once (~25 ms for
    1152x896) and cut in memory; a pair with few tiles (large datasets, where a shard's samples
    come from as many pairs) is read tile by tile from its chunks (~2 ms each).
    """
    by_entry: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_entry.setdefault(row["entry"], []).append(i)
    reader = TileReader(cache)
    tiles: list = [None] * len(rows)
    for entry, positions in by_entry.items():
        whole = cache.open(entry)["pixels"][:] if len(positions) >= WHOLE_PAIR_MIN else None
        for i in positions:
            y0, x0 = int(rows[i]["y0"]), int(rows[i]["x0"])
            box = (y0, x0, y0 + size, x0 + size)
            tiles[i] = (np.ascontiguousarray(whole[:, y0:y0 + size, x0:x0 + size])
                        if whole is not None else reader.read(entry, box))
        del whole
    return tiles


def write_shard_task(plan: dict, cache: PairCache, out: str, size: int,
                     fmt: str | None = None) -> dict:
    """Read the plan's tiles from the cache, encode them as pair samples and write one shard."""
    from shards import schema

    def encode(row, pair, attrs):
        meta = pair_meta(row, attrs, size, plan["split"])
        key = schema.make_key(row["pair_id"], int(row["row"]), int(row["col"]))
        return schema.encode_pair(key, pair[0], pair[1], meta, fmt=fmt or schema.DEFAULT_FORMAT)

    return _write_planned_shard(plan, cache, out, size, encode)


def _write_planned_shard(plan: dict, cache: PairCache, out: str, size: int, encode) -> dict:
    """One shard task: read the plan's tiles, ``encode(row, pair, record)`` each into a sample
    while the writer streams them out, and time the stages."""
    from shards import writer

    clock = StageClock()
    t = clock.start()
    rows = _records(plan["rows"])
    attrs_of = {entry: cache.record(entry) for entry in dict.fromkeys(r["entry"] for r in rows)}
    tiles = read_tiles(cache, rows, size)
    clock.add("read", t)
    clock.add("encode", clock.start())   # present (about 0) even for an empty shard

    def samples():
        for row, pair in zip(rows, tiles):
            t1 = clock.start()
            sample = encode(row, pair, attrs_of[row["entry"]])
            clock.add("encode", t1)
            yield sample

    start = clock.start()
    record = writer.write_shard(samples(), out, plan["split"], plan["index"])
    clock.add("write", start)
    for spent in (clock.seconds, clock.cpu_seconds):   # the samples were encoded while writing
        spent["write"] -= spent["encode"]
    return {"status": "ok", "record": record, **clock.result()}


# ------------------------------------------------------------------ output folder


RETIRED_NAME = ".retired-shards.json"


def manifest_files(out) -> set[str]:
    """The shard and index names the manifest in ``out`` lists, and those of a manifest retired
    by a build that did not finish (``RETIRED_NAME``): the only files a build may later remove.
    None when both are missing or unreadable."""
    from shards import manifest

    folder = os.fspath(out)
    names: set[str] = set()
    if os.path.exists(os.path.join(folder, manifest.MANIFEST_NAME)):
        try:
            records = manifest.all_shards(manifest.read_manifest(folder))
            names |= ({r["name"] for r in records}
                      | {r["index_name"] for r in records if r.get("index_name")})
        except Exception:  # noqa: BLE001 - an unreadable manifest names nothing we may delete
            pass
    try:
        with open(os.path.join(folder, RETIRED_NAME), encoding="utf-8") as fh:
            names |= {str(n) for n in json.load(fh)["names"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return names


def forget_retired(out) -> None:
    """The new manifest is written: the retired names are no longer needed."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(os.fspath(out), RETIRED_NAME))


def remove_stale_shards(out, keep: set[str], previous: set[str]) -> list[str]:
    """Delete the shard files (``split-NNNNNN.tar``/``.idx``) of the earlier build that the new one
    does not name. ``previous`` is what the earlier build's manifest listed (``manifest_files``
    read before it was retired): a file no manifest of ours named is never touched."""
    removed = []
    keep_all = set(keep) | {n[:-4] + ".idx" for n in keep}
    for name in sorted(set(previous) - keep_all):
        path = os.path.join(out, name)
        if _SHARD_FILE.match(name) and os.path.isfile(path):
            os.unlink(path)
            removed.append(name)
    return removed


def retire_old_manifest(out, params: dict) -> bool:
    """Remove ``manifest.json`` of an earlier build with other parameters before writing shards.

    While shards are rewritten the folder then has no manifest (readers see an unfinished
    build) instead of a manifest whose checksums no longer match. Same parameters: kept, since
    the rebuild writes byte-identical shards. The build calls this only once it has shards to
    write, so a build that stops earlier (bad input, nothing usable) leaves the old set whole.
    """
    from shards import manifest

    path = os.path.join(os.fspath(out), manifest.MANIFEST_NAME)
    if not os.path.exists(path):
        return False
    try:
        old = manifest.read_manifest(os.fspath(out))
        same = old.get("params_hash") == manifest.params_hash(params)
    except Exception:  # noqa: BLE001 - an unreadable manifest is replaced
        same = False
    if not same:
        # Its shard names are kept beside it first: a build killed before its own manifest is
        # written still lets the next one remove exactly those files.
        from shards import publish

        names = sorted(manifest_files(out))
        publish.write_text(os.path.join(os.fspath(out), RETIRED_NAME),
                           json.dumps({"names": names}, indent=1) + "\n")
        os.unlink(path)
    return not same


def write_build_manifest(out, records, params: dict, cache_hash: str, kind: str = "pair") -> dict:
    from shards import manifest

    man = manifest.build_manifest(records, params, extra={"sample_kind": kind,
                                                          "cache_params_hash": cache_hash})
    manifest.write_manifest(str(out), man)
    return man


# ------------------------------------------------------------------ downstream labelled patches


def labelled_entry(entry: str, cache: PairCache, size: int, task: str,
                   max_background: float = 0.5) -> dict:
    """The labelled patches of one cached pair for one task, as index rows (no pixels)."""
    from ingest import downstream

    clock = StageClock()
    t = clock.start()
    record = cache.record(entry)
    rows = []
    if record.rois["left"] or record.rois["right"]:
        pixels, masks = cache.read_pair(entry)
        rois = {side: record.labelled_rois(side) for side in ("left", "right")}
        found = downstream.labelled_patches(pixels[0], pixels[1], rois, size, tasks=(task,),
                                            left_mask=masks[0], right_mask=masks[1],
                                            max_background=max_background)
        for _, meta in found:
            y0, x0 = int(meta["box"][0]), int(meta["box"][1])
            rows.append((record.pair_id, entry, meta["side"], y0, x0, int(meta["label"]),
                         str(meta["label_name"]), meta["roi_side"], int(meta["roi"])))
    clock.add("tile", t)
    return {"entry": entry, "rows": rows, **clock.result()}


def patch_key(row: dict) -> str:
    from shards.schema import make_key

    return make_key(row["pair_id"], row["side"], f"y{int(row['y0'])}x{int(row['x0'])}",
                    row["roi_side"], int(row["roi"]))


def build_patch_index(found, seed: int, plan=None) -> pd.DataFrame:
    """The labelled patch index with a patch-level split (as in the paper).

    ``plan``: ``splits.plan_splits`` over the patch keys (``patch_plan``), by default made here.
    """
    rows = [row for res in found if isinstance(res, dict) for row in res.get("rows", ())]
    index = pd.DataFrame(rows, columns=list(PATCH_COLUMNS))
    plan = plan or patch_plan(found, seed)
    index["split"] = [plan.of[patch_key(r)] for r in index.to_dict("records")]
    index = index.sort_values(list(PATCH_ORDER), kind="stable").reset_index(drop=True)
    return _compact(index)


def patch_plan(found, seed: int, ratios=(8, 1, 1)):
    """The patch-level split of every labelled patch found (``splits.plan_splits``)."""
    from ingest import splits

    rows = [row for res in found if isinstance(res, dict) for row in res.get("rows", ())]
    records = pd.DataFrame(rows, columns=list(PATCH_COLUMNS)).to_dict("records")
    return splits.plan_splits([patch_key(r) for r in records], seed, ratios=ratios,
                              namespace="patch", unit="patch")


def write_patch_shard_task(plan: dict, cache: PairCache, out: str, size: int, task: str,
                           fmt: str | None = None) -> dict:
    """Read the plan's labelled patches from the cache, encode them and write one shard."""
    from shards import schema

    def encode(row, pair, attrs):
        image = pair[0] if row["side"] == "left" else pair[1]
        meta = schema.patch_meta(
            size=size, bits=attrs.bits, task=task, label=row["label"],
            split=plan["split"], y0=row["y0"], x0=row["x0"], label_name=row["label_name"],
            dataset=attrs.dataset, patient=attrs.patient, study=attrs.study,
            view=attrs.view, side=row["side"], roi_side=row["roi_side"], roi=int(row["roi"]),
            source=attrs.source[row["side"]])
        return schema.encode_patch(patch_key(row), np.ascontiguousarray(image), meta,
                                   fmt=fmt or schema.DEFAULT_FORMAT)

    return _write_planned_shard(plan, cache, out, size, encode)
