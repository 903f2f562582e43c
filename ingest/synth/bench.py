"""Benchmark of the synthetic generator: images per second at 1 and 2 workers, and the ratio.

    ingest bench-synth [--patients 2] [--small-patients 8] [--repeats 3]
                       [--sizes default 1152x896]

(``python -m ingest.synth.bench`` is the same command.)

Each figure is the median of ``repeats`` rounds, each round measuring render-only, ``generate``
with 1 worker (the baseline) and with 2 workers (one study per patient, files written and
fsynced) in the same process; the ratio is the median of the per-round ratios.  A render-only
figure (no files) shows what writing costs.
"""
from __future__ import annotations

import statistics
import tempfile
import time

from shards.cmdline import Parser, positive_int

from .exam import plan_patient, render_image, IMAGE_ORDER
from .generate import generate


def _size(text: str):
    if text == "default":
        return None
    h, w = text.lower().split("x")
    return int(h), int(w)


def _render_only(patients: int, size, seed: int) -> tuple[float, float]:
    """The same patients as ``generate`` with this seed, rendered in memory only:
    (images per second, CPU seconds per image; the latter barely depends on the machine's load)."""
    start, cpu = time.perf_counter(), time.process_time()
    n = 0
    for i in range(patients):
        plan = plan_patient(seed, i, "vindr", size, 0.3, (1, 1))
        for lat, view in IMAGE_ORDER:
            render_image(plan, 0, lat, view)
            n += 1
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n


def _generate_rate(patients: int, size, workers: int, seed: int) -> float:
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        s = generate("vindr", patients, tmp, seed=seed, image_size=size, workers=workers,
                     studies_per_patient=(1, 1), progress=False)
    return s["images"] / s["seconds"]


def main(argv=None) -> int:
    p = Parser(prog="ingest bench-synth", description=__doc__.splitlines()[0])
    p.add_argument("--patients", type=positive_int, default=2,
                   help="patients per run at the default size")
    p.add_argument("--small-patients", type=positive_int, default=8,
                   help="patients per run at other sizes")
    p.add_argument("--repeats", type=positive_int, default=3)
    p.add_argument("--sizes", nargs="+", default=["default", "1152x896"])
    args = p.parse_args(argv)
    for text in args.sizes:
        size = _size(text)
        n = args.patients if size is None else args.small_patients
        label = "default (3328x2560 / 2294x1914)" if size is None else f"{size[0]}x{size[1]}"
        # Rounds interleave the three measurements, so that a change of the machine's load hits
        # them alike; the ratio is the median of the per-round ratios.
        ro, cpu, one, two = [], [], [], []
        for r in range(args.repeats):
            rate, cpu_s = _render_only(n, size, r)
            ro.append(rate)
            cpu.append(cpu_s)
            one.append(_generate_rate(n, size, 1, r))
            two.append(_generate_rate(n, size, 2, r))
        ratio = statistics.median(b / a for a, b in zip(one, two))
        med = statistics.median
        print(f"{label}, {n} patients x 4 images: render only {med(ro):.2f} img/s "
              f"({med(cpu):.2f} CPU s/img) | generate "
              f"1 worker {med(one):.2f} img/s | 2 workers {med(two):.2f} img/s | ratio 2/1 = "
              f"{ratio:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
