"""Samples JSONL (written by `e2h predict`): reading with checks, and a graded sample as a step-labelled
solution (what a reward model trains on).

One line per sample: problem_id, level, sample_index, prompt, completion, answer, gold, correct, undecided
(grading ran out of its CPU budget), solved (right answer from steps the exact checker accepts; problems
of a generated benchmark only, else null), num_tokens, clipped (cut by max_new_tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2h.data.errors import DataError
from e2h.data.files import read_jsonl
from e2h.data.prompts import QUESTION_HEADING, SOLUTION_HEADING, question_from_prompt
from e2h.data.step_solutions import StepSolution, completion_steps
from e2h.data.exact_check import BENCHMARKS, checker_for

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


def sample_lines(path: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a samples JSONL, checked: the fields `e2h.data.samples.read_samples` needs plus
    ``prompt`` (a reward model reads the solution behind the prompt it was sampled with), and no two lines
    for the same (problem_id, sample_index)."""
    rows, seen = [], {}
    for lineno, row in read_jsonl(path):
        missing = [f for f in (*SAMPLE_FIELDS, "prompt") if f not in row]
        if missing:
            raise DataError(
                f"{path}:{lineno}: sample is missing field(s) {missing} (a file written by `e2h predict` has them)"
            )
        if not isinstance(row["completion"], str) or not isinstance(row["prompt"], str):
            raise DataError(f"{path}:{lineno}: 'prompt' and 'completion' must be strings")
        key = (str(row["problem_id"]), row["sample_index"])
        if key in seen:
            raise DataError(f"{path}:{lineno}: sample {key} repeats line {seen[key]}; each sample must appear once")
        seen[key] = lineno
        rows.append((lineno, row))
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows


def sample_outcome(row: dict[str, Any]) -> int:
    """A graded sample's outcome label: its ``correct`` field, or the grader's verdict when that is null."""
    if row.get("correct") is not None:
        return int(bool(row["correct"]))
    from e2h.grading import is_equivalent

    return int(is_equivalent(row["answer"], row["gold"]))


def sample_solution(row: dict[str, Any], process_labels: bool, where: str, label_fillers: bool = True) -> StepSolution:
    """A graded sample as a step-labelled solution: steps from its completion, outcome from its grade, and
    with `process_labels` exact step labels (problems of a generated benchmark only).

    Filler steps (pointer chains' ``~``) are always right and hold nothing to judge: `label_fillers` False
    leaves them unlabelled, so a validation AUROC counts only the steps that compute something."""
    steps = completion_steps(row["completion"])
    question = question_from_prompt(row["prompt"])
    labels: list[int | None] = [None] * len(steps)
    if process_labels:
        checker = checker_for(str(row["problem_id"]))
        if checker is None:
            ids = " or ".join(f"{b.SOURCE}/..." for b in BENCHMARKS)
            raise DataError(
                f"{where}: process_labels needs problems of a generated benchmark (ids {ids}), "
                f"got {row['problem_id']!r}"
            )
        if question is None:
            raise DataError(
                f"{where}: no '{QUESTION_HEADING} ... {SOLUTION_HEADING}' in the prompt; "
                "process_labels needs the paper prompt format"
            )
        try:
            labels = checker.label_steps(question, steps)[0]
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if not label_fillers:
            labels = [None if checker.is_filler(step) else label for step, label in zip(steps, labels)]
    return StepSolution(
        problem=question if question is not None else row["prompt"],
        steps=tuple(steps),
        labels=tuple(labels),
        outcome=sample_outcome(row) if row["gold"] is not None else None,
        answer=row["gold"],
        level=row["level"],
        unique_id=f"{row['problem_id']}#{row['sample_index']}",
        source="samples",
    )
