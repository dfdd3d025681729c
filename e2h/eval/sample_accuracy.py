"""Accuracy by level of sampled solutions: mean sample accuracy, majority voting over each problem's N samples,
and pass@N (any sample correct), each with its standard error and chance level; beside them the clip rate
(samples cut by max_new_tokens) and, where an exact step checker exists, pass@N counting only samples that
solve the problem step by step (a right answer from wrong steps is luck)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from e2h.data.records import subset_keys
from e2h.data.exact_check import checker_for
from e2h.eval.reranking import majority_vote
from e2h.eval.stats import NOISE_NOTE, chance_of_any, percent, standard_error
from e2h.grading import is_equivalent


@dataclass
class Accuracy:
    problems: int = 0
    samples: int = 0
    sample_correct: float = 0.0  # sum over problems of the fraction of its samples that are correct
    majority_correct: int = 0
    any_correct: int = 0
    any_solved: int = 0  # problems with a sample the exact checker accepts
    checked: int = 0  # problems with an exact checker (a generated benchmark)
    answer_chance: float = 0.0  # the largest chance level among the checked problems' benchmarks
    clipped: int = 0  # samples cut by max_new_tokens
    undecided: int = 0  # samples whose grading ran out of math-verify's CPU budget (graded wrong)
    n: int = 0  # samples per problem (the smallest, if they differ)

    @property
    def chance(self) -> float | None:
        """One guess's chance of the right answer, where known (every problem of a generated benchmark)."""
        return self.answer_chance if self.problems and self.checked == self.problems else None

    def figures(self) -> dict[str, Any]:
        """Every figure of the row, as fractions, with standard errors over problems."""
        p = max(self.problems, 1)
        figures: dict[str, Any] = {"problems": self.problems, "n": self.n, "chance": self.chance}
        for name, value in (
            ("sample_accuracy", self.sample_correct / p),
            ("majority", self.majority_correct / p),
            ("pass", self.any_correct / p),
        ):
            figures[name] = value
            figures[f"{name}_se"] = standard_error(value, self.problems)
        figures["pass_chance"] = None if self.chance is None else chance_of_any(self.chance, self.n)
        figures["solved_pass"] = self.any_solved / p if self.checked == self.problems and self.problems else None
        figures["clip_rate"] = self.clipped / max(self.samples, 1)
        figures["undecided"] = self.undecided
        return figures

    def row(self, name: str) -> str:
        f, chance = self.figures(), self.chance
        solved = "-" if f["solved_pass"] is None else percent(f["solved_pass"], self.problems)
        chances = "-" if chance is None else f"{chance:.0%} / {f['pass_chance']:.0%}"
        return (
            f"| {name} | {self.problems} | {self.n} | {percent(f['sample_accuracy'], self.problems, chance)} "
            f"| {percent(f['majority'], self.problems, chance)} | {percent(f['pass'], self.problems, f['pass_chance'])} "
            f"| {solved} | {f['clip_rate']:.1%} | {chances} |"
        )


def _correct(row: dict[str, Any], gold: str) -> bool:
    return bool(row["correct"]) if row.get("correct") is not None else is_equivalent(row["answer"], gold)


def summarize(by_problem: dict[str, list[dict[str, Any]]]) -> dict[str, Accuracy]:
    """Per level and per easy/hard group: mean sample accuracy, majority@N, pass@N, solved pass@N, clip rate."""
    table: dict[str, Accuracy] = defaultdict(Accuracy)
    for problem_id, rows in by_problem.items():
        gold, level = rows[0]["gold"], rows[0]["level"]
        if gold is None:
            continue
        correct = [_correct(r, gold) for r in rows]
        voted = majority_vote([r["answer"] for r in rows])
        checker = checker_for(problem_id)
        for key in subset_keys(level):
            acc = table[key]
            acc.n = len(rows) if not acc.problems else min(acc.n, len(rows))
            acc.problems += 1
            acc.samples += len(rows)
            acc.sample_correct += sum(correct) / len(rows)
            acc.majority_correct += voted is not None and is_equivalent(voted, gold)
            acc.any_correct += any(correct)
            acc.clipped += sum(bool(r.get("clipped")) for r in rows)
            acc.undecided += sum(bool(r.get("undecided")) for r in rows)
            if checker is not None:
                acc.checked += 1
                acc.answer_chance = max(acc.answer_chance, checker.ANSWER_CHANCE)
                acc.any_solved += any(bool(r.get("solved")) for r in rows)
    return dict(table)


def format_summary(table: dict[str, Accuracy]) -> str:
    keys = sorted(k for k in table if k.startswith("level")) + [k for k in ("easy", "hard", "all") if k in table]
    header = (
        "| subset | problems | N | sample accuracy | majority@N | pass@N | solved pass@N | clip rate | chance (1 / N) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    note = (
        "\n\nFigures are ± one standard error over problems. solved pass@N counts only samples whose every step "
        "the exact checker accepts (problems of a generated benchmark). clip rate: samples cut by max_new_tokens. "
        + NOISE_NOTE
    )
    undecided = table["all"].undecided if "all" in table else 0
    if undecided:
        note += f" Grading undecided (math-verify's CPU budget ran out; counted wrong): {undecided} samples."
    return "\n".join([header] + [table[k].row(k) for k in keys]) + note
