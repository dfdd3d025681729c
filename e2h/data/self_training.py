"""What a generator learns from its own scored samples: ReST-EM's accepted solutions and iterative DPO's
preference pairs, both chosen by the evaluators the easy-to-hard setting allows.

The evaluator of a sample depends on its problem:

- **answer visible** (easy levels, the only answers easy-to-hard supervision may use): the graded final
  answer (1 or 0) plus the reward model's solution ``score`` in [0, 1] if the samples were scored (the
  paper's iterative-DPO score, Sun et al. 2024, appendix C.3);
- **answer hidden** (``hidden_levels``, e.g. 4-5, or no gold answer): the reward model's ``score`` alone,
  since no answer may be read there. A hidden-answer sample without a score is an error.

A clipped sample (cut by the token budget) is never accepted or chosen: it is not a complete solution to learn
from. Nor is a sample without an answer (none declared, none in its free text) accepted.

Input: a scored samples JSONL (`e2h predict` with a reward model: each sample line plus ``score``) or a plain
samples JSONL where every answer is visible. Output rows are plain dicts, written as JSONL by
``e2h data accepted`` (MATH-schema records an SFT config trains on) and ``e2h data pairs`` (prompt, chosen,
rejected, what `e2h.datamodules.PreferencePairsDataModule` reads).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from e2h.data.errors import DataError
from e2h.data.prompts import ANSWER_HEADING, STEP_SEPARATOR, question_from_prompt

Rows = Mapping[str, Sequence[dict[str, Any]]]


def answer_hidden(row: Mapping[str, Any], hidden_levels: Collection[int]) -> bool:
    """Whether the easy-to-hard setting forbids reading this sample's gold answer."""
    return row.get("gold") is None or row.get("level") in set(hidden_levels)


def _score(row: Mapping[str, Any], where: str, required: bool) -> float:
    score = row.get("score")
    if score is None:
        if required:
            raise DataError(
                f"{where}: a sample whose answer is hidden is judged by its reward-model score, and it has none; "
                "score the samples first (`e2h predict --config configs/tiny/score.yaml ...`)"
            )
        return 0.0
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise DataError(f"{where}: 'score' must be a finite number, got {score!r}")
    return float(score)


def evaluator_value(row: Mapping[str, Any], hidden_levels: Collection[int], where: str = "sample") -> float:
    """The evaluator's value of a sample (larger is better): its reward-model score where the answer is
    hidden; 1 or 0 for its graded answer plus its score (0 if unscored) where the answer is visible."""
    if answer_hidden(row, hidden_levels):
        return _score(row, where, required=True)
    return float(bool(row.get("correct"))) + _score(row, where, required=False)


def accepted(row: Mapping[str, Any], hidden_levels: Collection[int], threshold: float, where: str = "sample") -> bool:
    """ReST-EM's filter: a complete sample with an answer, whose visible answer is right or whose hidden-answer
    score is at least `threshold`."""
    if row.get("clipped") or row.get("answer") is None:
        return False
    if answer_hidden(row, hidden_levels):
        return _score(row, where, required=True) >= threshold
    return bool(row.get("correct"))


def solution_record(row: Mapping[str, Any], where: str = "sample") -> dict[str, Any]:
    """A sample as a MATH-schema record to fine-tune on: the question of its prompt, the completion before its
    answer section (all of it when it declares none: the answer came from its free text) as the solution, and
    its own answer, which the trainer writes as the answer section."""
    question = question_from_prompt(row["prompt"])
    if question is None:
        raise DataError(f"{where}: no question in the prompt; ReST-EM records need the paper prompt format")
    if row.get("answer") is None:
        raise DataError(f"{where}: the sample has no answer; it cannot be an accepted solution")
    solution = row["completion"].partition(STEP_SEPARATOR + ANSWER_HEADING)[0].strip()
    return {
        "unique_id": f"{row['problem_id']}#{row['sample_index']}",
        "problem": question,
        "solution": solution,
        "answer": row["answer"],
        "level": row.get("level"),
    }


def accepted_records(
    samples: Rows, hidden_levels: Collection[int], threshold: float, max_per_problem: int | None = None
) -> list[dict[str, Any]]:
    """ReST-EM's training set: each problem's accepted samples, best-ranked first, at most `max_per_problem`
    of them (so problems the policy solves easily do not crowd out the rest), distinct completions only."""
    records = []
    for problem_id, rows in samples.items():
        where = f"problem {problem_id}"
        kept, seen = [], set()
        for row in sorted(rows, key=lambda r: evaluator_value(r, hidden_levels, where), reverse=True):
            if accepted(row, hidden_levels, threshold, where) and row["completion"] not in seen:
                seen.add(row["completion"])
                kept.append(solution_record(row, f"{where}, sample {row['sample_index']}"))
        records.extend(kept[:max_per_problem])
    return records


def preference_pairs(samples: Rows, hidden_levels: Collection[int], min_margin: float = 0.0) -> list[dict[str, Any]]:
    """Iterative DPO's pairs: per problem, its best-valued complete (not clipped) sample as chosen against its worst-valued sample as rejected, when the chosen one's value exceeds the rejected one's
    by more than `min_margin` (0: ties dropped; the paper asks for more than 1.0, i.e. a right answer against a
    wrong one and a better score). A problem whose best and worst share one completion gives no pair."""
    pairs = []
    for problem_id, rows in samples.items():
        where = f"problem {problem_id}"
        values = {id(r): evaluator_value(r, hidden_levels, where) for r in rows}
        ranked = sorted(rows, key=lambda r: values[id(r)], reverse=True)
        complete = [r for r in ranked if not r.get("clipped")]
        if not complete:
            continue
        best, worst = complete[0], ranked[-1]
        if values[id(best)] - values[id(worst)] <= min_margin or best["completion"] == worst["completion"]:
            continue
        pairs.append({
            "problem_id": problem_id,
            "level": best.get("level"),
            "prompt": best["prompt"],
            "chosen": best["completion"],
            "rejected": worst["completion"],
            "rejected_clipped": bool(worst.get("clipped")),
            "chosen_value": values[id(best)],
            "rejected_value": values[id(worst)],
        })
    return pairs
