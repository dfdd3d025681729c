"""`e2h data synth`: write the synthetic benchmark (problems and step-labelled solutions) to a folder."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from e2h.data import chains
from e2h.data.files import atomic_write_jsonl, read_jsonl
from e2h.data.records import ALL_LEVELS, Problem
from e2h.data.step_solutions import StepSolution, read_step_solutions
from e2h.data.synthetic import write_benchmark

_DESCRIPTION = """\
Write a synthetic easy-to-hard benchmark with exactly checkable steps.

Problems are chains of single-digit + and - modulo 10; a level-L problem has L+1 operations. Each
solution step does the first operation and restates what remains:

  problem  6+4+7-5+9
  steps    6+4=0 0+7-5+9 | 0+7=7 7-5+9 | 7-5=2 2+9 | 2+9=1     answer 1

Files written to --out:
  train.jsonl, test.jsonl              problems in the MATH schema (disjoint problem texts)
  train_steps.jsonl, test_steps.jsonl  one solution per problem with step labels (PRM800K style:
                                       none after the first wrong step) and an outcome label;
                                       --wrong-fraction of them contain one wrong step

Level 1 has 4,000 distinct problems; each further level multiplies that by 20.

--benchmark chains writes the pointer-chain benchmark instead (e2h.data.chains): seven named operations a
problem, steps that follow the names, train.jsonl and test.jsonl only (--fillers puts filler steps into
the train solutions):

  problem  3>f|a*4>. f+8>q c-2>. q*3>a e+5>c g-1>e x*2>g
  steps    f+8=1>q | q*3=3>a | a*4=2>.     answer 2
"""


def _describe(problems_or_solutions: Sequence[Problem] | Sequence[StepSolution]) -> str:
    counts = Counter(item.level for item in problems_or_solutions)
    return ", ".join(f"L{level} {counts[level]}" for level in sorted(counts))


def _write_chains(args: argparse.Namespace) -> dict[str, Path]:
    train, test = chains.benchmark_splits(
        args.train_per_level, args.test_per_level, args.levels, args.seed, fillers=args.fillers
    )
    paths = {name: args.out / f"{name}.jsonl" for name in ("train", "test")}
    atomic_write_jsonl((p.to_dict() for p in train), paths["train"])
    atomic_write_jsonl((p.to_dict() for p in test), paths["test"])
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``e2h data synth``); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="e2h data synth", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--train-per-level", type=int, default=1000, help="train problems per level (default 1000)")
    parser.add_argument("--test-per-level", type=int, default=100, help="test problems per level (default 100)")
    parser.add_argument(
        "--levels", type=int, nargs="+", default=list(ALL_LEVELS), help="levels to generate (default 1 2 3 4 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed writes the same files")
    parser.add_argument(
        "--wrong-fraction",
        type=float,
        default=0.5,
        help="fraction of step-labelled solutions given one wrong step (default 0.5)",
    )
    parser.add_argument(
        "--benchmark", choices=("synthetic", "chains"), default="synthetic", help="which benchmark (default synthetic)"
    )
    parser.add_argument(
        "--fillers", type=float, default=0.0, help="chains: probability of one more filler step (default 0)"
    )
    args = parser.parse_args(argv)
    try:
        if args.benchmark == "chains":
            paths = _write_chains(args)
        else:
            paths = write_benchmark(
                args.out, args.train_per_level, args.test_per_level, args.levels, args.seed, args.wrong_fraction
            )
    except ValueError as e:
        parser.error(str(e))
    # Report from the files themselves, so what is printed is what was written.
    for name, path in paths.items():
        if name.endswith("_steps"):
            solutions = list(read_step_solutions(path))
            n_wrong = sum(0 in s.labels for s in solutions)
            print(f"wrote {path}: {len(solutions)} solutions ({_describe(solutions)}; {n_wrong} with a wrong step)")
        else:
            problems = [Problem(**row) for _, row in read_jsonl(path)]
            print(f"wrote {path}: {len(problems)} problems ({_describe(problems)})")
    return 0
