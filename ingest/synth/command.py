"""``ingest synth``: write synthetic screening mammograms in a real dataset's layout."""
from __future__ import annotations

import argparse
import json
import sys

from shards import cmdline
from shards.cmdline import UsageError, fraction, positive_int

from .generate import default_workers, generate
from .layouts import LAYOUTS


def _size(text: str) -> int:
    value = positive_int(text)
    if value < 64:
        raise argparse.ArgumentTypeError(f"image side must be at least 64, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="write synthetic bilateral mammograms (VinDr-Mammo, OPTIMAM, CBIS-DDSM or "
                        "RSNA layout)",
        description="Synthetic screening mammograms (four views per study) with lesions, in the "
                    "VinDr-Mammo, OPTIMAM, CBIS-DDSM or RSNA file layout, plus ground_truth.json.")
    p.add_argument("--layout", required=True, choices=list(LAYOUTS), help="file layout to write")
    p.add_argument("--patients", required=True, type=positive_int, help="number of patients")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--image-size", nargs=2, type=_size, metavar=("H", "W"),
                   help="image rows and columns (default: detector sizes, 3328x2560 or 2294x1914)")
    p.add_argument("--lesion-fraction", type=fraction, default=0.3,
                   help="fraction of patients with a lesion (default 0.3)")
    p.add_argument("--studies", nargs=2, type=positive_int, default=(1, 2), metavar=("MIN", "MAX"),
                   help="screening studies per patient (default 1 2)")
    p.add_argument("--positioning-only", action="store_true",
                   help="the right breast is the left one mirrored: the two images of a view differ "
                        "only by their positioning and noise (registration checks)")
    p.add_argument("--artefacts", action="store_true",
                   help="some images get film edges and scanner strips (cbis-ddsm) or collimation "
                        "edges (digital layouts), markers, rulers and text, and the two sides "
                        "differ more in size and compression")
    p.add_argument("--preview", metavar="FILE.png", help="write a contact sheet of a few exams")
    cmdline.add_workers(p, default_workers(), f"worker processes (default {default_workers()})")
    cmdline.add_quiet(p)
    p.set_defaults(func=run)


def run(args) -> int:
    lo, hi = args.studies
    if lo > hi:
        raise UsageError(f"--studies MIN MAX needs MIN <= MAX, got {lo} {hi}")
    if args.preview and not args.preview.lower().endswith(".png"):
        raise UsageError(f"--preview must name a .png file, got {args.preview}")
    summary = generate(layout=args.layout, patients=args.patients, out=args.out, seed=args.seed,
                       image_size=tuple(args.image_size) if args.image_size else None,
                       lesion_fraction=args.lesion_fraction, workers=args.workers,
                       studies_per_patient=(lo, hi), progress=not args.quiet, preview=args.preview,
                       pair_variation="positioning-only" if args.positioning_only else "realistic",
                       artefacts=args.artefacts)
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0
