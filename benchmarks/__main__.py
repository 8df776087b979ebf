"""`python -m benchmarks [--quick] [--output bench-results/bench.json] [--only riak]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks import build, delta, end_to_end, extract, memory, reconcile, riak, scale_out
from benchmarks.harness import (
    Case,
    Settings,
    compile_package,
    render_table,
    run_cases,
    write_json,
)
from migrate.errors import MigrateError

CASES: dict[str, Case] = {
    "riak": riak.run,
    "reconcile": reconcile.run,
    "build": build.run,
    "extract": extract.run,
    "end_to_end": end_to_end.run,
    "memory": memory.run,
    "delta": delta.run,
    "dask": scale_out.run,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure each figure against a baseline measured in the same run; "
        "print a table and write it as JSON.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer documents and repeats (<30 s)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("bench-results/bench.json"),
        help="where to write the figures as JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(CASES), help="run only this case (repeatable)"
    )
    parser.add_argument("--repeats", type=int, help="repeats per figure (default: 5, quick: 3)")
    parser.add_argument("--documents", type=int, help="documents per load (default: by --quick)")
    args = parser.parse_args(argv)
    if args.repeats is not None and not 1 <= args.repeats <= 50:
        parser.error("--repeats must be between 1 and 50")
    if args.documents is not None and not 1 <= args.documents <= 200_000:
        parser.error("--documents must be between 1 and 200000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        quick=args.quick,
        repeats=args.repeats or (3 if args.quick else 5),
        documents=args.documents,
    )
    names = args.only or list(CASES)
    compile_package()  # measure the toolkit as installed, not its first start
    try:
        figures = run_cases([(name, CASES[name]) for name in names], settings)
    except MigrateError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return exc.exit_code
    print()
    print(render_table(figures))
    write_json(args.output, figures, settings, " ".join(["python -m benchmarks", *sys.argv[1:]]))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
