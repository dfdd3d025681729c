"""`e2h data samples`: accuracy by level of a samples file (mean, majority@N, pass@N)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from e2h.data.samples import read_samples
from e2h.eval.sample_accuracy import format_summary, summarize


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="e2h data samples",
        description="Accuracy by level of a samples file written by `e2h predict`: mean accuracy of single "
        "samples, majority voting over the N samples of each problem, and pass@N (any sample correct).",
    )
    parser.add_argument("samples", help="samples JSONL")
    args = parser.parse_args(argv)
    print(format_summary(summarize(read_samples(args.samples))))
    return 0
