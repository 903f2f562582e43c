"""The ``shards`` command: ``verify``, ``stats``, ``ls``, ``upload`` over a shard set,
``convert`` (``shards/convert.py``) and ``bench`` (``shards/bench.py``)."""
from __future__ import annotations

import sys

from shards import cmdline, codecs
from shards.cmdline import Parser, run_main


def _progress_bar(desc: str, quiet: bool):
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety
        return None
    return None if quiet else tqdm(unit="file" if desc == "upload" else "shard", desc=desc,
                                   file=sys.stderr, leave=False)


def _verify(args) -> int:
    from shards import verify

    bar = _progress_bar("verify", args.quiet)
    try:
        report = verify.verify(args.root, sample_fraction=args.sample_fraction, seed=args.seed,
                               workers=args.workers, endpoint=args.endpoint_url,
                               progress=(lambda _: bar.update()) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    for problem in report.all_problems:
        print(f"PROBLEM {problem}")
    for note in report.notes:
        print(f"note    {note}")
    print(report.summary())
    return 0 if report.ok else 1


def _stats(args) -> int:
    from shards import stats

    count = args.preview_pairs if args.preview else 0
    result = stats.collect(args.root, max_samples=args.max_samples, preview_count=count,
                           seed=args.seed, endpoint=args.endpoint_url)
    print(stats.format_report(result))
    if args.preview:
        if result["preview"]:
            drawn = stats.contact_sheet(result["preview"], args.preview)
            print(f"contact sheet: {args.preview} ({drawn} random pairs, 8-bit display window)")
        else:
            print("contact sheet: no pair samples to draw")
    return 0


def _ls(args) -> int:
    from shards import manifest

    data = manifest.read_manifest(args.root, endpoint=args.endpoint_url)
    print(f"{'split':6s} {'shard':22s} {'samples':>8s} {'bytes':>12s}  sha256        index")
    for split, entry in data["splits"].items():
        for r in entry["shards"]:
            print(f"{split:6s} {r['name']:22s} {r['samples']:8d} {r['bytes']:12d}  "
                  f"{r['sha256'][:12]}  {r.get('index_name') or '-'}")
    for split, entry in data["splits"].items():
        print(f"{split}: {entry['shard_count']} shards, {entry['samples']} samples, {entry['bytes']} bytes")
    t = data["totals"]
    print(f"total: {t['shards']} shards, {t['samples']} samples, {t['bytes']} bytes "
          f"(format {data['format_version']}, params {data['params_hash'][:12]})")
    return 0


def _upload(args) -> int:
    from shards import upload

    bar = _progress_bar("upload", args.quiet)
    try:
        report = upload.upload(args.root, args.dest, workers=args.workers,
                               endpoint=args.endpoint_url,
                               progress=(lambda _: bar.update()) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    for failure in report.failed:
        print(f"FAILED {failure}")
    print(report.summary())
    return 0 if report.ok else 1


def _convert(args) -> int:
    from shards import convert

    convert.convert(args.root, args.format, args.out, workers=args.workers,
                    endpoint=args.endpoint_url)
    return 0


def build_parser() -> Parser:
    parser = Parser(prog="shards", description="Inspect, check and publish WebDataset shard sets.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = sub.add_parser("verify", help="check checksums, counts, index files and decoding")
    cmdline.add_shard_set(p)
    p.add_argument("--sample-fraction", type=cmdline.fraction, default=0.05,
                   help="fraction of samples decoded through the schema (default 0.05)")
    p.add_argument("--seed", type=int, default=0)
    cmdline.add_workers(p, 4, "shards checked at once (default 4)")
    cmdline.add_quiet(p)
    cmdline.add_endpoint_url(p)
    p.set_defaults(func=_verify)

    p = sub.add_parser("stats", help="counts, A and background distributions, contact sheet")
    cmdline.add_shard_set(p)
    p.add_argument("--preview", metavar="FILE.png", help="write a contact sheet of random pairs")
    p.add_argument("--preview-pairs", type=cmdline.positive_int, default=16)
    p.add_argument("--max-samples", type=cmdline.positive_int, default=None,
                   help="scan at most this many samples for the distributions")
    p.add_argument("--seed", type=int, default=0)
    cmdline.add_endpoint_url(p)
    p.set_defaults(func=_stats)

    p = sub.add_parser("ls", help="list shards: split, samples, bytes, sha256 prefix")
    cmdline.add_shard_set(p)
    cmdline.add_endpoint_url(p)
    p.set_defaults(func=_ls)

    p = sub.add_parser("upload", help="upload a local shard set to s3:// (resumable)")
    p.add_argument("root", metavar="ROOT")
    p.add_argument("dest", metavar="S3_URL", help="s3://bucket/prefix")
    cmdline.add_workers(p, 8, "files uploaded at once (default 8)")
    cmdline.add_quiet(p)
    cmdline.add_endpoint_url(p)
    p.set_defaults(func=_upload)

    p = sub.add_parser("convert", help="the same shard set in another pixel format "
                                       "(every pixel checked equal)")
    cmdline.add_shard_set(p)
    p.add_argument("--format", required=True, choices=tuple(codecs.CODECS),
                   help="the new pixel format (docs/shards.md)")
    p.add_argument("--out", required=True, help="new local folder for the converted set")
    cmdline.add_workers(p, 2, "shards converted at once (default 2)")
    cmdline.add_endpoint_url(p)
    p.set_defaults(func=_convert)

    cmdline.add_delegate(sub, "bench", "shards.bench",
                         "write and stream-read throughput, bytes per pair (benchmark)")
    return parser


def main(argv=None) -> int:
    return run_main(build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
