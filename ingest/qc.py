"""``ingest qc``: a contact sheet of a build's pairs, the worst first, to check an archive by eye.

One row per pair: both sides as registered (the fixed side normalised, the moving side on its
grid), their overlay (left red, right green: tissue that lines up turns yellow), the two breast
masks (left red, right green, both yellow: where they disagree the tiles are dropped), and the
pair's figures (alignment kept, mask Dice and correlation as it came and registered). Rejected
pairs come first, then the accepted ones from the lowest alignment score up, so the pairs worth
a look are at the top. The sheet reads the build's ``report.json`` and the pairs in its cache.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from shards import cmdline, publish

SHEET_NAME = "qc.png"
THUMB_HEIGHT = 200
TEXT_WIDTH = 330
WRAP = 44           # characters per line of the figures
GAP = 6


def display_8bit(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The breast windowed to its own 1st-99th percentiles; background black."""
    out = np.zeros(pixels.shape, np.uint8)
    inside = pixels[mask]
    if inside.size:
        lo, hi = np.percentile(inside, (1, 99))
        scaled = np.clip((pixels.astype(np.float32) - lo) / max(hi - lo, 1.0), 0, 1)
        out[mask] = (scaled[mask] * 254 + 1).astype(np.uint8)
    return out


def panels(pixels: np.ndarray, masks: np.ndarray) -> list[np.ndarray]:
    """RGB panels of one registered pair: left, right, image overlay, mask overlay."""
    left, right = (display_8bit(pixels[i], masks[i].astype(bool)) for i in (0, 1))
    zero = np.zeros_like(left)
    grey = [np.stack([x, x, x], axis=-1) for x in (left, right)]
    overlay = np.stack([left, right, zero], axis=-1)
    m = masks.astype(np.uint8) * 255
    mask_overlay = np.stack([m[0], m[1], zero], axis=-1)
    return [*grey, overlay, mask_overlay]


def rows_of(report: dict, cache, max_rows: int | None = None) -> list[dict]:
    """The sheet's rows from a report: rejected pairs first, then the accepted ones from the
    lowest alignment score (``register.alignment_score`` of the alignment kept) up."""
    from ingest.register import alignment_score

    entries = report.get("entries", {})
    rejected, seen = [], set()
    for rej in report.get("rejected", []):
        if rej.get("stage") != "register":
            continue
        pair = rej.get("pair") or rej["item"]
        seen.add(pair)
        rejected.append({"pair": pair, "entry": entries.get(pair), "status": "rejected",
                         "reason": rej["reason"], "detail": rej.get("detail", "")})
    accepted = []
    for pair, entry in sorted(entries.items()):
        if pair in seen or not cache.has(entry):
            continue
        q = cache.record(entry).quality
        accepted.append({"pair": pair, "entry": entry, "status": "used", "reason": "", "detail": "",
                         "score": alignment_score(q.get("dice_after", 0.0), q.get("tissue_after", 0.0))})
    accepted.sort(key=lambda r: (r["score"], r["pair"]))
    rows = rejected + accepted
    return rows[:max_rows] if max_rows else rows


def _figures(row: dict, quality: dict | None) -> list[str]:
    pair = row["pair"]
    lines = [pair[i:i + WRAP] for i in range(0, len(pair), WRAP)]
    lines.append("REJECTED: " + row["reason"] if row["status"] == "rejected" else "used")
    if row["detail"]:
        lines.append(row["detail"][:WRAP])
    if quality:
        q = quality
        lines.append(f"alignment kept: {q.get('alignment', 'registered')}")
        lines.append(f"Dice  as came {q.get('dice_before', float('nan')):.3f}  "
                     f"registered {q.get('dice_registered', q.get('dice_after', float('nan'))):.3f}")
        lines.append(f"corr  as came {q.get('ncc_before', float('nan')):.3f}  "
                     f"registered {q.get('ncc_registered', q.get('ncc_after', float('nan'))):.3f}")
        lines.append(f"tissue as came {q.get('tissue_before', float('nan')):.3f}  "
                     f"registered {q.get('tissue_registered', float('nan')):.3f}")
    elif row["status"] == "rejected":
        lines.append("no registered pixels (rejected before the cache)")
    return lines


def render(rows: list[dict], cache, path, thumb_height: int = THUMB_HEIGHT) -> str:
    """Draw the sheet to ``path`` (PNG, published atomically); returns the path."""
    font = ImageFont.load_default(size=13)
    drawn = []
    width = TEXT_WIDTH
    for row in rows:
        quality, tiles = None, []
        if row.get("entry") and cache.has(row["entry"]):
            quality = cache.record(row["entry"]).quality
            pixels, masks = cache.read_pair(row["entry"])
            h, w = pixels.shape[1:]
            size = (max(1, round(w * thumb_height / h)), thumb_height)
            tiles = [np.asarray(Image.fromarray(p).resize(size, Image.BILINEAR))
                     for p in panels(pixels, masks)]
        drawn.append((row, quality, tiles))
        width = max(width, sum(t.shape[1] + GAP for t in tiles) + TEXT_WIDTH)
    header = 24
    height = header + len(drawn) * (thumb_height + GAP)
    sheet = Image.new("RGB", (width, max(height, header + 1)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 5), "left | right | overlay L red, R green | masks L red, R green | figures "
              "(rejected first, then worst accepted)", fill=(230, 230, 230), font=font)
    y = header
    for row, quality, tiles in drawn:
        x = GAP
        for t in tiles:
            sheet.paste(Image.fromarray(t), (x, y))
            x += t.shape[1] + GAP
        colour = (255, 120, 120) if row["status"] == "rejected" else (200, 230, 200)
        draw.multiline_text((x, y + 4), "\n".join(_figures(row, quality)), fill=colour,
                            font=font, spacing=4)
        y += thumb_height + GAP
    publish.write_bytes(str(path), _png_bytes(sheet))
    return str(path)


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def write_qc(out, sheet=None, max_rows: int | None = 24) -> str:
    """The contact sheet of the build in ``out`` (its report.json and cache); returns its path."""
    from ingest.cache import PairCache
    from ingest.report import REPORT_NAME

    out = Path(out)
    report_path = out / REPORT_NAME
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path}: no report.json (is {out} a build's --out folder?)")
    report = json.loads(report_path.read_text())
    cache_info = report.get("cache") or {}
    if "root" not in cache_info or "entries" not in report:
        raise ValueError(f"{report_path}: no cache or pair entries recorded (a build-shards "
                         "report of this version is needed)")
    cache = PairCache.at(cache_info["root"])
    rows = rows_of(report, cache, max_rows)
    return render(rows, cache, Path(sheet) if sheet else out / SHEET_NAME)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "qc", help="contact sheet of a build's pairs, rejected and worst first",
        description="One row per pair of a build: both sides, their overlay after registration "
                    "(left red, right green), the two masks and the figures; rejected pairs first, "
                    "then the accepted ones from the worst alignment up.")
    p.add_argument("--out", required=True, help="the build's --out folder (report.json)")
    p.add_argument("--sheet", help=f"the PNG to write (default <out>/{SHEET_NAME})")
    p.add_argument("--rows", type=cmdline.positive_int, default=24,
                   help="at most this many pairs (default 24)")
    p.set_defaults(func=run_qc)


def run_qc(args) -> int:
    path = write_qc(args.out, args.sheet, args.rows)
    print(f"wrote {path}")
    return 0
