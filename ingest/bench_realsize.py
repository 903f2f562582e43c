"""Benchmark of one exam pair at real image sizes: decode, normalise, register, per transfer
syntax, on one core.

    ingest bench-realsize [--patients 2] [--image-size 4000 3000] [--out-shape 1152 896]
                          [--syntax uncompressed rle j2k] [--seed 0] [--full-decode]

Real archives hold images of 3000 x 4000 pixels and more, most of them compressed (RSNA: JPEG
2000 lossless; others RLE). The generator renders ``--patients`` exams (``ingest.synth``, RSNA
headers, once, not timed) at ``--image-size`` and writes every image in each transfer syntax:
explicit VR little endian (uncompressed), RLE lossless (pydicom's encoder) and JPEG 2000
lossless (Pillow's OpenJPEG, as the RSNA layout writes it). Then, per syntax and per CC/MLO
pair, in this process on one thread: ``decode`` (``pydicom.dcmread`` and
``ingest.decode.stored_pixels`` of both files: JPEG 2000 at a reduced resolution unless
``--full-decode``), ``normalise`` (``normalize_dataset`` of both onto ``--out-shape``) and ``register``
(``register_pair`` with the defaults), timed in CPU seconds of this process (on one thread the
work itself, whatever else the machine runs). Prints the median CPU seconds of each stage per pair, the
exam pairs per second per core (one over their sum) and the ratio against the uncompressed
files measured in the same run (the baseline).
"""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path


from shards.cmdline import Parser, positive_int, run_main

SYNTAXES = ("uncompressed", "rle", "j2k")
TARGET = 1.0   # exam pairs per second per core, end to end


def write_files(base: Path, patients: int, image_size, seed: int, syntaxes) -> list[dict]:
    """Render the exams and write each image in every syntax; returns one dict per pair:
    ``{"view", "paths": {syntax: (left path, right path)}}``."""
    from pydicom.uid import RLELossless

    from ingest.synth import render_exam
    from ingest.synth import dicom_writer
    from ingest.synth.layout_rsna import write_j2k

    pairs = []
    for index in range(patients):
        plan, studies = render_exam(seed, index, image_size=image_size, layout="rsna",
                                    studies_per_patient=(1, 1))
        by_key = {(im.record["laterality"], im.record["view"]): im for im in studies[0]}
        for view in ("CC", "MLO"):
            paths = {s: [] for s in syntaxes}
            for side in ("L", "R"):
                im = by_key[(side, view)]
                ids = {"patient_id": str(index), "study_uid": dicom_writer.make_uid(seed, index, "s"),
                       "series_uid": dicom_writer.make_uid(seed, index, side, view, "series"),
                       "sop_uid": dicom_writer.make_uid(seed, index, side, view), "accession": ""}
                for syntax in syntaxes:
                    ds = dicom_writer.header(im.record, ids, plan.device, plan.age,
                                             plan.studies[0].date)
                    path = base / syntax / f"{index}_{side}_{view}.dcm"
                    if syntax == "uncompressed":
                        dicom_writer.write_dicom(path, ds, im.pixels)
                    elif syntax == "j2k":
                        write_j2k(path, ds, im.pixels)
                    else:
                        ds.compress(RLELossless, im.pixels, encoding_plugin="pydicom")
                        dicom_writer.save(path, ds, ds.PixelData, RLELossless)
                    paths[syntax].append(path)
            pairs.append({"view": view, "paths": paths})
    return pairs


def time_pair(left: Path, right: Path, out_shape, reduced_decode: bool = True) -> dict:
    """Seconds of decode, normalise and register for one pair (one thread)."""
    import pydicom

    from ingest.decode import stored_pixels
    from ingest.normalize import normalize_dataset
    from ingest.register import register_pair

    clock = time.process_time     # CPU seconds of this process: the shared machine's load aside
    t0 = clock()
    datasets = [pydicom.dcmread(p) for p in (left, right)]
    stored = [stored_pixels(ds, out_shape, reduced_decode=reduced_decode) for ds in datasets]
    t1 = clock()
    fixed, moving = [normalize_dataset(ds, out_shape=out_shape, stored=px)
                     for ds, px in zip(datasets, stored)]
    t2 = clock()
    register_pair(fixed.pixels, moving.pixels, fixed.mask, moving.mask, threads=1)
    t3 = clock()
    return {"decode": t1 - t0, "normalise": t2 - t1, "register": t3 - t2}


def run(patients: int, image_size, out_shape, syntaxes, seed: int = 0, work_dir=None,
        reduced_decode: bool = True) -> dict:
    base = Path(tempfile.mkdtemp(prefix="bench-realsize-", dir=work_dir))
    try:
        pairs = write_files(base, patients, image_size, seed, syntaxes)
        sizes = {s: statistics.median(p.stat().st_size for pair in pairs for p in pair["paths"][s])
                 for s in syntaxes}
        results = {}
        for syntax in syntaxes:
            rows = [time_pair(*pair["paths"][syntax], out_shape, reduced_decode)
                    for pair in pairs]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            med["total"] = sum(med.values())
            med["pairs_per_second_per_core"] = 1.0 / med["total"]
            med["file_mb"] = sizes[syntax] / 2 ** 20
            results[syntax] = med
        return {"pairs": len(pairs), "results": results}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main(argv=None) -> int:
    parser = Parser(prog="ingest bench-realsize", description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=positive_int, default=2)
    parser.add_argument("--image-size", type=positive_int, nargs=2, default=(4000, 3000),
                        metavar=("H", "W"))
    parser.add_argument("--out-shape", type=positive_int, nargs=2, default=(1152, 896),
                        metavar=("H", "W"))
    parser.add_argument("--syntax", nargs="+", choices=SYNTAXES, default=list(SYNTAXES),
                        help="transfer syntaxes to time; the first is the baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-decode", action="store_true",
                        help="decode JPEG 2000 in full (NormalizeParams.reduced_decode False)")
    parser.add_argument("--work-dir", help="where to write the files (default: a temporary folder)")

    def command(args):
        import os

        out = run(args.patients, tuple(args.image_size), tuple(args.out_shape), args.syntax,
                  args.seed, args.work_dir, reduced_decode=not args.full_decode)
        res = out["results"]
        base = res[args.syntax[0]]["pairs_per_second_per_core"]
        print(f"one exam pair at {args.image_size[0]}x{args.image_size[1]} -> "
              f"{args.out_shape[0]}x{args.out_shape[1]}, {out['pairs']} CC/MLO pairs, one thread, "
              f"median CPU seconds per pair ({os.cpu_count()} CPUs on this machine), JPEG 2000 "
              f"decoded {'in full' if args.full_decode else 'at a reduced resolution'}")
        print(f"{'syntax':>13} {'file MB':>8} {'decode':>7} {'normalise':>9} {'register':>8} "
              f"{'total':>7} {'pairs/s/core':>12} {'ratio':>6} target {TARGET:g}")
        for syntax, r in res.items():
            print(f"{syntax:>13} {r['file_mb']:>8.1f} {r['decode']:>7.3f} {r['normalise']:>9.3f} "
                  f"{r['register']:>8.3f} {r['total']:>7.3f} "
                  f"{r['pairs_per_second_per_core']:>12.2f} "
                  f"{r['pairs_per_second_per_core'] / base:>6.2f} "
                  f"{'met' if r['pairs_per_second_per_core'] >= TARGET else 'not met'}")
        return 0

    parser.set_defaults(func=command)
    return run_main(parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
