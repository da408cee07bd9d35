"""``python -m kalla.bench.peers <engine> --left L --right R --out DIR --format parquet|csv``."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from importlib import metadata
from pathlib import Path

from kalla.bench.peers import DESCRIPTIONS, ENGINES
from kalla.bench.peers._common import PeerJob, emit, parse_size

_PACKAGES = {
    "duckdb": "duckdb",
    "polars": "polars",
    "datafusion": "datafusion",
    "pandas": "pandas",
    "datacompy": "datacompy",
    "floor": "pyarrow",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kalla.bench.peers",
        description="Run one peer engine on the invoices-vs-payments workload.",
        epilog="\n".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("engine", choices=sorted(ENGINES))
    parser.add_argument("--left", required=True, type=Path, help="invoices file")
    parser.add_argument("--right", required=True, type=Path, help="payments file")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--format", choices=("parquet", "csv"), default=None)
    parser.add_argument("--memory-limit", default=None, help="e.g. 16G (engines that have one)")
    parser.add_argument(
        "--counts", default=None, help="floor only: matched,unmatched_left,unmatched_right"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = _parser().parse_args(argv)
    fmt = args.format or ("csv" if args.left.suffix.lower() == ".csv" else "parquet")
    expected = None
    if args.counts:
        a, b, c = (int(x) for x in args.counts.split(","))
        expected = (a, b, c)
    job = PeerJob(
        left=args.left,
        right=args.right,
        out=args.out,
        fmt=fmt,
        memory_limit=parse_size(args.memory_limit) if args.memory_limit else None,
        counts=expected,
    )
    job.out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"kalla.bench.peers.{ENGINES[args.engine]}")
    result = module.run(job)
    package = _PACKAGES[args.engine]
    emit(
        {
            "engine": args.engine,
            **result,
            "seconds": round(time.perf_counter() - started, 3),
            "version": metadata.version(package),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
