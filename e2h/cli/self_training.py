"""`e2h data accepted` (ReST-EM's training set) and `e2h data pairs` (iterative DPO's preference pairs): a
generator's scored samples turned into what the next round trains on (`e2h.data.self_training`)."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Sequence

from e2h.data.errors import DataError
from e2h.data.files import atomic_write_jsonl
from e2h.data.records import level_key
from e2h.data.samples import read_samples
from e2h.data.self_training import accepted_records, preference_pairs

log = logging.getLogger(__name__)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("samples", help="samples JSONL from `e2h predict`, scored by a reward model where answers are hidden")
    parser.add_argument("--out", required=True, help="JSONL to write (atomically)")
    parser.add_argument("--hidden-levels", type=int, nargs="*", default=[4, 5],
                        help="levels whose gold answers the evaluator may not read (default: 4 5); an empty list "
                        "reads every answer")
    return parser


def _by_level(rows) -> str:
    counts = Counter(level_key(r.get("level")) for r in rows)
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"


def accepted_main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(
        "e2h data accepted",
        "ReST-EM's filter: keep each problem's complete samples whose visible answer is right, or whose "
        "reward-model score reaches --threshold where the answer is hidden; write them as MATH-schema records "
        "(question, solution, the sample's own answer) for SFT.",
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="least reward-model score of an accepted "
                        "hidden-answer sample (default 0.5)")
    parser.add_argument("--max-per-problem", type=int, default=None,
                        help="keep at most this many solutions per problem, best-ranked first (default: all)")
    args = parser.parse_args(argv)
    samples = read_samples(args.samples)
    records = accepted_records(samples, args.hidden_levels, args.threshold, args.max_per_problem)
    if not records:
        raise DataError(f"{args.samples}: the evaluator accepted no sample (none complete with a right visible answer "
                        f"or a hidden-answer score >= {args.threshold}); there is nothing to fine-tune on")
    atomic_write_jsonl(records, args.out)
    total = sum(len(rows) for rows in samples.values())
    print(f"accepted {len(records)} of {total} samples ({len(samples)} problems) -> {args.out}; by level: "
          f"{_by_level(records)}")
    return 0


def pairs_main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(
        "e2h data pairs",
        "Iterative DPO's pairs: per problem, the evaluator's best complete sample (chosen) against its worst "
        "(rejected); problems whose best and worst tie give none.",
    )
    parser.add_argument("--min-margin", type=float, default=0.0,
                        help="least value gap between chosen and rejected (value: 1/0 for a visible answer + the "
                        "reward-model score); default 0 drops ties only, the paper used 1.0")
    args = parser.parse_args(argv)
    samples = read_samples(args.samples)
    pairs = preference_pairs(samples, args.hidden_levels, args.min_margin)
    if not pairs:
        raise DataError(f"{args.samples}: no pairs: in every problem the best complete sample and the worst tie "
                        f"(value gap <= --min-margin {args.min_margin}), or no sample is complete")
    atomic_write_jsonl(pairs, args.out)
    print(f"{len(pairs)} pairs from {len(samples)} problems ({len(samples) - len(pairs)} ties or without a complete "
          f"sample) -> {args.out}; by level: {_by_level(pairs)}")
    return 0
