"""Re-ranking sampled solutions: answers grouped by mathematical equivalence, majority voting.

Answers are grouped with `e2h.grading.is_equivalent`, not by string, so ``\\frac12`` and ``0.5`` vote
together. Pure functions, no Lightning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from e2h.grading import is_equivalent


def group_answers(
    answers: Sequence[str | None], equivalent: Callable[[str, str], bool] = is_equivalent
) -> list[list[int]]:
    """Indices of `answers` grouped by equivalence, groups in order of first appearance.

    Each answer joins the first group whose first answer it is equivalent to; missing answers (None) are
    in no group.
    """
    groups: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for group in groups:
            if equivalent(answer, answers[group[0]]):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def majority_vote(
    answers: Sequence[str | None], equivalent: Callable[[str, str], bool] = is_equivalent
) -> str | None:
    """The answer given most often (by equivalence); a tie goes to the group that appeared first.

    None when no sample has an answer.
    """
    groups = group_answers(answers, equivalent)
    if not groups:
        return None
    best = max(groups, key=len)  # max keeps the first of equal-sized groups
    return answers[best[0]]
