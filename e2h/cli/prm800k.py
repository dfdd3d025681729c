"""`e2h data prm800k`: convert PRM800K (raw records or the stepwise-critique layout) to step-labelled JSONL."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from e2h.data.errors import DataError
from e2h.data.prm800k import NEUTRAL_POLICIES, convert_files, jsonl_files
from e2h.data.step_solutions import write_step_solutions


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="e2h data prm800k",
        description="Convert PRM800K step ratings into step-labelled JSONL (one example per rated step).",
    )
    ap.add_argument("--input", nargs="+", required=True, metavar="PATH", help="jsonl files or folders")
    ap.add_argument(
        "--format",
        choices=("raw", "stepwise"),
        default="raw",
        help="raw PRM800K records, or the denormalised stepwise-critique layout (default: raw)",
    )
    ap.add_argument("--out", required=True, metavar="OUT.jsonl", help="step-labelled jsonl to write")
    ap.add_argument(
        "--neutral",
        choices=NEUTRAL_POLICIES,
        default="positive",
        help="label for neutral (0) ratings: positive = 1 (official), negative = 0, drop = skip",
    )
    ap.add_argument("--math", metavar="PATH", help="MATH-schema jsonl giving each problem's level")
    ap.add_argument("--levels", nargs="+", type=int, metavar="N", help="keep these levels (needs --math)")
    ap.add_argument("--exclude", metavar="PATH", help="MATH-schema jsonl of problems to drop (e.g. MATH500)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: convert, write atomically, print counts. Returns 0, or 1 on bad input data."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.levels is not None and args.math is None:
        ap.error("--levels needs --math (the MATH split that gives each problem's level)")
    try:
        examples, counts = convert_files(
            args.input, layout=args.format, neutral=args.neutral, math=args.math, levels=args.levels,
            exclude=args.exclude,
        )
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_step_solutions(examples, args.out)
    unit = "records" if args.format == "raw" else "rows"
    print(f"read {counts.inputs} {unit} from {len(jsonl_files(args.input))} file(s)")
    print(f"wrote {counts.examples} examples to {args.out} (label 1: {counts.positive}, label 0: {counts.negative})")
    print(
        f"skipped: unrated {counts.unrated}, neutral dropped {counts.neutral_dropped}, "
        f"held-out {counts.held_out_dropped}, level {counts.level_dropped}, duplicates {counts.duplicates_dropped}"
    )
    return 0
