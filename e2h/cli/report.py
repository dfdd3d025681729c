"""`e2h data report`: re-ranking accuracy against N, by level and easy/hard, from sampled and scored solutions
(see `e2h.eval.report` for the inputs and outputs)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from e2h.data.errors import DataError
from e2h.eval.report import build_report, format_markdown, log_tensorboard, write_outputs


def _scorer_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. orm=scored_orm.jsonl), got {text!r}")
    return name, path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="e2h data report",
        description="Re-ranking accuracy against the number of samples N, by level and easy/hard: mean "
        "single-sample accuracy, majority voting, weighted voting and best-of-N with each reward model's "
        "scores, and pass@N. Each N is averaged over random subsets of the samples of every problem. For "
        "problems of a generated benchmark, each scorer's step AUROC on the samples' own steps, by level and "
        "error kind, with the exact checker's labels.",
    )
    parser.add_argument("--samples", required=True, help="samples JSONL written by `e2h predict`")
    parser.add_argument(
        "--scores", nargs="*", default=[], type=_scorer_arg, metavar="NAME=PATH",
        help="scored samples JSONL of one reward model each, e.g. orm=orm.jsonl prm=prm.jsonl",
    )
    parser.add_argument("--out", help="folder for report.md, report.csv, report.json and accuracy_vs_n.png")
    parser.add_argument("--ns", type=int, nargs="+", help="values of N (default: 1, 2, 4, ... up to N_max, and N_max)")
    parser.add_argument("--subsets", type=int, default=20, help="random subsets per problem and N (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets (default 0)")
    parser.add_argument(
        "--exhaustive", action="store_true",
        help="average over every subset of size N instead of random ones (exact; small N_max only)",
    )
    parser.add_argument("--tensorboard", help="also write the accuracies as TensorBoard scalars to this folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    names = [name for name, _ in args.scores]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        parser.error(f"--scores: scorer name(s) {repeated} given more than once")
    if args.subsets < 1:
        parser.error(f"--subsets must be at least 1, got {args.subsets}")
    try:
        t0 = time.perf_counter()
        report = build_report(
            args.samples, dict(args.scores), args.ns, args.subsets, args.seed, exhaustive=args.exhaustive
        )
        seconds = time.perf_counter() - t0
        if args.out:
            write_outputs(report, args.out)
        if args.tensorboard:
            log_tensorboard(report, args.tensorboard)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable --out or --tensorboard folder
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(format_markdown(report), end="")  # with each scorer's step AUROC, where the problems have a step checker
    print(
        f"report: {report.problems['all']} problems, {len(report.rows)} accuracies, "
        f"{report.grader_calls} grader calls, {seconds:.2f} s", file=sys.stderr,
    )
    return 0
