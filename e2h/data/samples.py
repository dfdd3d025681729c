"""Samples JSONL (written by `e2h predict`): reading with checks.

One line per sample: problem_id, level, sample_index, prompt, completion, answer, gold, correct, num_tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from e2h.data.errors import DataError
from e2h.data.files import read_jsonl

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
