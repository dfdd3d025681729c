"""Solution scores from reward-model step scores: pure functions, no framework.

A reward model (ORM, PRM or OPRM) outputs one logit per token. A *step score* is the sigmoid of that output
at the last token of a step; the *solution score* is one number per solution, used for best-of-N and
weighted voting. How the step scores become a solution score is `aggregate`'s ``how``:

- ``min`` (the official default): a solution is as good as its worst step;
- ``product``: the probability that every step is right, if the steps were independent;
- ``last``: the last step's score;
- ``mean``: the average step score.

An ORM is trained on one label at the solution's final token (the EOS), so its score is read there, not
from the steps: `solution_score` with ``how="final"`` returns the final-token score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

AGGREGATIONS = ("min", "product", "last", "mean")
"""Ways to turn step scores into a solution score (`aggregate`)."""
FINAL = "final"
"""Read the solution score at the final token (the ORM's label position) instead of aggregating steps."""
SCORE_READINGS = (*AGGREGATIONS, FINAL)
SUPERVISIONS = ("outcome", "process", "both")
"""ORM, PRM, OPRM: which labels a reward model is trained on."""

EMPTY_SCORE = 0.0
"""Score of a solution with no steps: nothing in it was shown to be right, so it ranks below scored ones."""


def check_reading(how: str) -> str:
    """`how` if it names a score reading (`SCORE_READINGS`), else a ValueError listing them."""
    if how not in SCORE_READINGS:
        raise ValueError(f"unknown score aggregation {how!r}; choose one of {SCORE_READINGS}")
    return how


def default_reading(supervision: str) -> str:
    """The score reading a reward model is trained for: the final token for an ORM, ``min`` otherwise.

    An ORM's only label sits on the final token, so its step-end outputs were never trained; a PRM or OPRM
    is read at its steps and aggregated with the official default, ``min``.
    """
    if supervision not in SUPERVISIONS:
        raise ValueError(f"unknown supervision {supervision!r}; choose one of {SUPERVISIONS}")
    return FINAL if supervision == "outcome" else "min"


def aggregate(step_scores: Sequence[float], how: str = "min", empty: float = EMPTY_SCORE) -> float:
    """One solution score from its step scores (see the module docstring); `empty` when there are none.

    An empty solution gets `empty` (default 0.0) rather than the vacuous min (+inf) or product (1.0),
    which would rank a solution that says nothing above every real one.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown step aggregation {how!r}; choose one of {AGGREGATIONS}")
    scores = [float(s) for s in step_scores]
    if not scores:
        return float(empty)
    if how == "min":
        return min(scores)
    if how == "product":
        return math.prod(scores)
    if how == "last":
        return scores[-1]
    return sum(scores) / len(scores)


def solution_score(step_scores: Sequence[float], final_score: float, how: str) -> float:
    """The solution score under a reading: `final_score` for ``final``, else `aggregate` of the steps."""
    if check_reading(how) == FINAL:
        return float(final_score)
    return aggregate(step_scores, how)
