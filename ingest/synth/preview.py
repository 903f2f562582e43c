"""Contact sheet of a few exams: 8-bit, display-windowed, lesion boxes drawn."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from shards import publish

THUMB_HEIGHT = 360


def display_8bit(pixels: np.ndarray, record: dict) -> np.ndarray:
    """Apply the image's window (linear) and photometric: bright = dense, as a reader sees it."""
    wc, ww = record["window_center"], record["window_width"]
    lo = wc - ww / 2.0
    d = np.clip((pixels.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / ww), 0, 1)
    if record["photometric"] == "MONOCHROME1":
        d = 1.0 - d
    return (d * 255.0 + 0.5).astype(np.uint8)


def thumbnail(pixels: np.ndarray, record: dict, height: int = THUMB_HEIGHT) -> dict:
    """A small display image of one stored image, with its lesion boxes scaled to it."""
    rows, cols = pixels.shape
    width = max(1, round(cols * height / rows))
    img = Image.fromarray(display_8bit(pixels, record)).resize((width, height), Image.BILINEAR)
    f = height / rows
    boxes = [[b * f for b in les["box"]] for les in record["lesions"]]
    out = {"image": np.asarray(img), "boxes": boxes, "label": f"{record['laterality']} {record['view']}"}
    if record["lesions"]:
        out["zoom"] = lesion_zoom(pixels, record, height)
    return out


def lesion_zoom(pixels: np.ndarray, record: dict, height: int) -> dict:
    """Full-resolution crop around the first lesion (three box sizes wide), scaled to ``height``."""
    les = record["lesions"][0]
    x0, y0, x1, y1 = les["box"]
    rows, cols = pixels.shape
    half = max(x1 - x0, y1 - y0, 48) * 3 // 2
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    r0, c0 = max(0, min(cy - half, rows - 2 * half)), max(0, min(cx - half, cols - 2 * half))
    crop = pixels[r0:r0 + 2 * half, c0:c0 + 2 * half]
    f = height / crop.shape[0]
    img = Image.fromarray(display_8bit(crop, record)).resize(
        (max(1, round(crop.shape[1] * f)), height), Image.BILINEAR)
    box = [(x0 - c0) * f, (y0 - r0) * f, (x1 - c0) * f, (y1 - r0) * f]
    label = f"{record['laterality']} {record['view']} {les['type']} {les['shape']} {les['size_mm']:.0f} mm"
    return {"image": np.asarray(img), "boxes": [box], "label": label}


def contact_sheet(exams: list[dict], path) -> None:
    """``exams``: [{"title": str, "thumbs": [thumbnail x4]}]; one row per exam, written as PNG.

    A lesion's full-resolution zoom, when there is one, ends its row.
    """
    if not exams:
        return
    exams = [{"title": e["title"], "thumbs": e["thumbs"] + [t["zoom"] for t in e["thumbs"] if "zoom" in t][:1]}
             for e in exams]
    pad, title_h = 6, 18
    row_w = max(sum(t["image"].shape[1] for t in e["thumbs"]) + pad * (len(e["thumbs"]) + 1) for e in exams)
    height = sum(max(t["image"].shape[0] for t in e["thumbs"]) + title_h + pad for e in exams) + pad
    sheet = Image.new("RGB", (row_w, height), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    y = pad
    for exam in exams:
        draw.text((pad, y + 2), exam["title"], fill=(230, 230, 230))
        y += title_h
        x = pad
        for th in exam["thumbs"]:
            sheet.paste(Image.fromarray(th["image"]).convert("RGB"), (x, y))
            for x0, y0, x1, y1 in th["boxes"]:
                draw.rectangle([x + x0 - 2, y + y0 - 2, x + x1 + 2, y + y1 + 2], outline=(255, 40, 40), width=2)
            draw.text((x + 4, y + th["image"].shape[0] - 14), th["label"], fill=(255, 210, 0))
            x += th["image"].shape[1] + pad
        y += max(t["image"].shape[0] for t in exam["thumbs"]) + pad
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with publish.atomic_open(path, "wb", fsync_dir=False) as fh:
        sheet.save(fh, format="PNG")
