"""MetaMathQA records (the paper's second SFT source) as MATH-schema problems in the step format.

A MetaMathQA row has ``query``, ``response`` (reasoning lines ending in ``The answer is: X``), ``type``
(``MATH_*`` or ``GSM_*``) and ``original_question``. A MATH-derived item is kept only when its
``original_question`` is a problem of the chosen MATH set (so easy-to-hard SFT sees only augmentations of
easy problems) and inherits that problem's level; GSM-derived items are kept only on request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from e2h.data.errors import DataError
from e2h.data.prompts import STEP_SEPARATOR
from e2h.data.records import Problem, normalize_problem_text

_ANSWER_LINE = re.compile(r"\n?\s*The answer is:?\s*(.+?)\s*$", re.DOTALL)


def split_metamath_response(response: str) -> tuple[list[str], str | None]:
    """Steps (one per non-empty line) and the final answer from ``The answer is: X``."""
    match = _ANSWER_LINE.search(response)
    answer = match.group(1).strip() if match else None
    body = response[: match.start()] if match else response
    steps = [line.strip() for line in body.split("\n") if line.strip()]
    return steps, answer


def metamath_to_problems(
    rows: Iterable[Mapping[str, Any]],
    math_problems: Iterable[Problem],
    keep_gsm: bool = False,
    where: str = "metamath",
) -> list[Problem]:
    """MetaMathQA rows rewritten into the step format, restricted to the given MATH problems."""
    level_of = {normalize_problem_text(p.problem): p.level for p in math_problems}
    out = []
    for i, row in enumerate(rows):
        for key in ("query", "response", "type"):
            if not isinstance(row.get(key), str):
                raise DataError(f"{where}: record {i}: missing required field {key!r}")
        kind = row["type"]
        if kind.startswith("MATH"):
            original = normalize_problem_text(str(row.get("original_question") or ""))
            if original not in level_of:
                continue
            level = level_of[original]
        elif kind.startswith("GSM") and keep_gsm:
            level = None
        else:
            continue
        steps, answer = split_metamath_response(row["response"])
        if answer is None or not steps:
            continue
        out.append(
            Problem(
                problem=row["query"],
                solution=STEP_SEPARATOR.join(steps),
                answer=answer,
                level=level,
                subject=kind,
                unique_id=f"metamath/{i}",
            )
        )
    return out
