"""Samples JSONL (written by `e2h predict`): reading with checks, and the accuracy-by-level summary.

One line per sample: problem_id, level, sample_index, prompt, completion, answer, gold, correct, num_tokens.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2h.data.errors import DataError
from e2h.grading import is_equivalent
from e2h.data.files import read_jsonl
from e2h.data.records import difficulty_group
from e2h.reranking import majority_vote

SAMPLE_FIELDS = ("problem_id", "level", "sample_index", "completion", "answer", "gold")


def read_samples(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Samples grouped by problem id (file order kept); a missing field names the file, line and field."""
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for lineno, row in read_jsonl(path):
        missing = [f for f in SAMPLE_FIELDS if f not in row]
        if missing:
            raise DataError(f"{path}:{lineno}: sample is missing field(s) {missing} (a file written by `e2h predict` has them)")
        by_problem.setdefault(str(row["problem_id"]), []).append(row)
    if not by_problem:
        raise DataError(f"{path}: no samples")
    return by_problem


@dataclass
class Accuracy:
    problems: int = 0
    samples: int = 0
    sample_correct: float = 0.0
    majority_correct: int = 0
    any_correct: int = 0

    def row(self, name: str) -> str:
        p = max(self.problems, 1)
        return (
            f"| {name} | {self.problems} | {self.samples / p:.0f} | {self.sample_correct / p:.1%} "
            f"| {self.majority_correct / p:.1%} | {self.any_correct / p:.1%} |"
        )


def summarize(by_problem: dict[str, list[dict[str, Any]]]) -> dict[str, Accuracy]:
    """Per level and per easy/hard group: mean sample accuracy, majority@N and pass@N."""
    table: dict[str, Accuracy] = defaultdict(Accuracy)
    for rows in by_problem.values():
        gold, level = rows[0]["gold"], rows[0]["level"]
        if gold is None:
            continue
        correct = [bool(r.get("correct")) if r.get("correct") is not None else is_equivalent(r["answer"], gold) for r in rows]
        voted = majority_vote([r["answer"] for r in rows])
        for key in ("all", difficulty_group(level), f"level {level}"):
            acc = table[key]
            acc.problems += 1
            acc.samples += len(rows)
            acc.sample_correct += sum(correct) / len(rows)
            acc.majority_correct += voted is not None and is_equivalent(voted, gold)
            acc.any_correct += any(correct)
    return dict(table)


def format_summary(table: dict[str, Accuracy]) -> str:
    keys = sorted(k for k in table if k.startswith("level")) + [k for k in ("easy", "hard", "all") if k in table]
    header = "| subset | problems | N | sample accuracy | majority@N | pass@N |\n|---|---|---|---|---|---|"
    return "\n".join([header] + [table[k].row(k) for k in keys])


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
