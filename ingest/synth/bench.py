"""Benchmark of the synthetic generator: images per second at 1 and 2 workers, and the ratio.

    python -m ingest.synth.bench [--patients 2] [--small-patients 8] [--repeats 3]
                                 [--sizes default 1152x896]

Each figure is the median of ``repeats`` runs of ``generate`` (one study per patient, files
written and fsynced); the baseline is 1 worker measured in the same process.  A render-only
figure (no files) shows what writing costs.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from .exam import plan_patient, render_image, IMAGE_ORDER
from .generate import generate


def _size(text: str):
    if text == "default":
        return None
    h, w = text.lower().split("x")
    return int(h), int(w)


def _render_only(patients: int, size) -> float:
    start = time.perf_counter()
    n = 0
    for i in range(patients):
        plan = plan_patient(1000, i, "vindr", size, 0.3, (1, 1))
        for lat, view in IMAGE_ORDER:
            render_image(plan, 0, lat, view)
            n += 1
    return n / (time.perf_counter() - start)


def _run(patients: int, size, workers: int, repeats: int) -> float:
    rates = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
            s = generate("vindr", patients, tmp, seed=r, image_size=size, workers=workers,
                         studies_per_patient=(1, 1), progress=False)
            rates.append(s["images"] / s["seconds"])
    return statistics.median(rates)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ingest.synth.bench", description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=int, default=2, help="patients per run at the default size")
    p.add_argument("--small-patients", type=int, default=8, help="patients per run at other sizes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", nargs="+", default=["default", "1152x896"])
    args = p.parse_args(argv)
    for text in args.sizes:
        size = _size(text)
        n = args.patients if size is None else args.small_patients
        label = "default (3328x2560 / 2294x1914)" if size is None else f"{size[0]}x{size[1]}"
        ro = statistics.median(_render_only(n, size) for _ in range(args.repeats))
        one = _run(n, size, 1, args.repeats)
        two = _run(n, size, 2, args.repeats)
        print(f"{label}, {n} patients x 4 images: render only {ro:.2f} img/s | generate 1 worker {one:.2f} img/s | "
              f"2 workers {two:.2f} img/s | ratio 2/1 = {two / one:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
