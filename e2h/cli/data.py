"""`e2h data ...`: the data tools.

- ``e2h data synth``    write the synthetic arithmetic benchmark (problems + step-labelled solutions)
- ``e2h data prm800k``  convert raw PRM800K (or its stepwise-critique layout) to step-labelled JSONL
- ``e2h data stats``    load, filter and summarise a problem set; token lengths and padding waste
- ``e2h data samples``  accuracy by level of sampled solutions (mean, majority@N, pass@N)
- ``e2h data report``   re-ranking accuracy against N (majority, weighted, best-of-N, pass@N) by level
- ``e2h data accepted`` ReST-EM: the scored samples an evaluator accepts, as SFT records
- ``e2h data pairs``    iterative DPO: best against worst scored sample per problem, as preference pairs
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

TOOLS = {
    "synth": "e2h.cli.synth",
    "prm800k": "e2h.cli.prm800k",
    "stats": "e2h.cli.data",
    "samples": "e2h.cli.samples",
    "report": "e2h.cli.report",
    "accepted": "e2h.cli.self_training:accepted_main",
    "pairs": "e2h.cli.self_training:pairs_main",
}


def _usage() -> str:
    return __doc__.strip() + "\n\nRun `e2h data TOOL --help` for a tool's options."


def stats_main(argv: Sequence[str] | None = None) -> int:
    """Summarise a problem set: load and filter throughput, counts by level/subject/group, token lengths."""
    from e2h.data.records import difficulty_group, exclude_held_out, filter_levels, level_counts, load_problems

    parser = argparse.ArgumentParser(
        prog="e2h data stats",
        description="Load a MATH-schema problem set (local .jsonl/.json/.parquet or a hub dataset id), "
        "filter it by level, and print counts, throughput and (with --tokenizer) token lengths and padding waste.",
    )
    parser.add_argument("source", help="local file or Hugging Face dataset id")
    parser.add_argument("--split", default="train", help="dataset split (hub ids)")
    parser.add_argument("--levels", type=int, nargs="+", help="keep only these levels, e.g. --levels 1 2 3")
    parser.add_argument("--exclude", help="held-out problem set to remove (by unique_id and text), e.g. MATH500")
    parser.add_argument("--tokenizer", help="'char' or a tokenizer path/id: report token lengths and padding waste")
    parser.add_argument("--prompt-format", default="paper", choices=("paper", "boxed"))
    parser.add_argument("--batch-size", type=int, default=16, help="batch size for the padding-waste figure")
    parser.add_argument("--max-length", type=int, default=2048, help="row length for packing")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    problems = load_problems(args.source, split=args.split)
    t_load = time.perf_counter() - t0
    print(f"loaded {len(problems)} records from {args.source} in {t_load:.2f} s ({len(problems) / t_load:,.0f} records/s)")
    t0 = time.perf_counter()
    if args.exclude:
        problems = exclude_held_out(problems, load_problems(args.exclude))
    problems = filter_levels(problems, args.levels)
    t_filter = time.perf_counter() - t0
    print(f"kept {len(problems)} after filtering in {t_filter:.3f} s")
    print("by level:", ", ".join(f"{k}: {v}" for k, v in level_counts(problems).items()))
    groups = Counter(difficulty_group(p.level) for p in problems)
    print("by group:", ", ".join(f"{k}: {v}" for k, v in sorted(groups.items())))
    subjects = Counter(p.subject for p in problems)
    print("by subject:", ", ".join(f"{k}: {v}" for k, v in subjects.most_common()))
    if args.tokenizer:
        _print_token_stats(problems, args)
    return 0


def _print_token_stats(problems, args) -> None:
    import statistics

    from e2h.data.prompts import PromptFormat
    from e2h.text.encoding import encode_sft
    from e2h.text.packing import padding_waste
    from e2h.text.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    fmt = PromptFormat(args.prompt_format)
    t0 = time.perf_counter()
    lengths = [len(encode_sft(tokenizer, fmt.prompt(p.problem), fmt.response(p))["input_ids"]) for p in problems]
    dt = time.perf_counter() - t0
    q = statistics.quantiles(lengths, n=100)
    print(
        f"tokens per example ({args.tokenizer}): mean {statistics.mean(lengths):.0f}, p50 {q[49]:.0f}, "
        f"p95 {q[94]:.0f}, max {max(lengths)}; tokenised {len(lengths) / dt:,.0f} examples/s"
    )
    fitting = [n for n in lengths if n <= args.max_length]
    if len(fitting) < len(lengths):
        print(f"{len(lengths) - len(fitting)} examples exceed --max-length {args.max_length} (left out of the waste figures)")
    plain = padding_waste(fitting, args.batch_size)
    packed = padding_waste(fitting, args.batch_size, max_length=args.max_length, pack=True)
    print(
        f"padding waste at batch {args.batch_size}: {plain:.1%} without packing, "
        f"{packed:.1%} packed into rows of {args.max_length}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    tool, rest = args[0], args[1:]
    if tool not in TOOLS:
        print(f"e2h data: unknown tool {tool!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if tool == "stats":
        return stats_main(rest)
    import importlib

    module, _, function = TOOLS[tool].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)
