"""Accuracy by level of sampled solutions: mean sample accuracy, majority voting over each problem's N samples,
and pass@N (any sample correct)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from e2h.data.records import subset_keys
from e2h.eval.reranking import majority_vote
from e2h.grading import is_equivalent


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
        for key in subset_keys(level):
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
