"""Re-ranking sampled solutions, and accuracy against the number of samples N.

Answers are grouped with `e2h.grading.is_equivalent`, not by string, so ``\\frac12`` and ``0.5`` vote
together. Three ways to pick one answer out of N sampled solutions (the paper's re-ranking):

- :func:`majority_vote`: the answer given most often;
- :func:`weighted_vote`: the answer whose solutions have the largest summed reward-model score;
- :func:`best_of_n`: the answer of the single highest-scored solution.

:func:`accuracy_at_n` measures a method at a given N by averaging over subsets of size N of each problem's
N_max samples (random and seeded, or all of them when that is cheaper or asked for), with the grader's
answers cached so thousands of subsets cost no more grader calls than the distinct answers need.
Pure functions (besides the grader cache), no Lightning.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from e2h.data.records import subset_keys
from e2h.generation.seeding import stable_seed
from e2h.grading import is_equivalent

Equivalence = Callable[[str, str], bool]

#: Plain methods; the scored ones are written ``weighted:<scorer>`` and ``best_of_n:<scorer>``.
PLAIN_METHODS = ("mean", "majority", "pass")
SCORED_METHODS = ("weighted", "best_of_n")
#: Most subsets the exhaustive path enumerates for one problem and one N (C(64, 32) would never end).
MAX_EXHAUSTIVE_SUBSETS = 100_000


# --------------------------------------------------------------------------------------------------
# Choosing one answer out of N
# --------------------------------------------------------------------------------------------------


def group_answers(
    answers: Sequence[str | None], equivalent: Equivalence = is_equivalent
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
    answers: Sequence[str | None], equivalent: Equivalence = is_equivalent
) -> str | None:
    """The answer given most often (by equivalence); a tie goes to the group that appeared first.

    None when no sample has an answer.
    """
    groups = group_answers(answers, equivalent)
    if not groups:
        return None
    best = max(groups, key=len)  # max keeps the first of equal-sized groups
    return answers[best[0]]


def _check_same_length(answers: Sequence[str | None], scores: Sequence[float]) -> None:
    if len(answers) != len(scores):
        raise ValueError(f"{len(answers)} answers but {len(scores)} scores; need one score per answer")


def weighted_vote(
    answers: Sequence[str | None], scores: Sequence[float], equivalent: Equivalence = is_equivalent
) -> str | None:
    """The answer whose equivalence group has the largest sum of solution scores.

    A tie (equal sums) goes to the group that appeared first. Samples without an answer (None) never vote,
    whatever their score. Returns the group's first spelling of the answer; None when no sample has one.
    """
    _check_same_length(answers, scores)
    groups = group_answers(answers, equivalent)
    if not groups:
        return None
    best = max(groups, key=lambda group: sum(scores[i] for i in group))  # max keeps the first of equal sums
    return answers[best[0]]


def best_of_n(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer of the highest-scored sample; a tie goes to the first such sample.

    A sample without an answer can win, and then the result is None: the reward model's favourite solution
    gave no final answer, which is what best-of-N shows a user, so it counts as wrong rather than falling
    back to the runner-up (which would credit best-of-N with a choice it did not make).
    None also when there are no samples.
    """
    _check_same_length(answers, scores)
    if not answers:
        return None
    best = max(range(len(answers)), key=lambda i: scores[i])  # max keeps the first of equal scores
    return answers[best]


# --------------------------------------------------------------------------------------------------
# Accuracy against N
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemSamples:
    """One problem's N_max sampled answers (None: no answer extracted) and each scorer's solution scores."""

    problem_id: str
    level: int | None
    gold: str
    answers: tuple[str | None, ...]
    scores: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, values in self.scores.items():
            if len(values) != len(self.answers):
                raise ValueError(
                    f"problem {self.problem_id!r}: scorer {name!r} has {len(values)} scores for {len(self.answers)} samples"
                )


class GradingCache:
    """Memoised ``equivalent(pred, ref)``: each ordered pair of strings is graded once.

    The same table serves answer-to-answer equivalence (grouping) and answer-to-gold correctness (grading),
    since both are the grader asked about a pair. Keys are ordered because the grader need not be symmetric
    and `group_answers` always asks ``equivalent(later answer, group's first answer)``.
    """

    def __init__(self, equivalent: Equivalence = is_equivalent) -> None:
        self._equivalent = equivalent
        self._table: dict[tuple[str, str], bool] = {}
        self.calls = 0  # grader calls actually made (misses), for runtime reports and tests

    def __call__(self, pred: str, ref: str) -> bool:
        key = (pred, ref)
        hit = self._table.get(key)
        if hit is None:
            self.calls += 1
            hit = self._table[key] = bool(self._equivalent(pred, ref))
        return hit

    def correct(self, answer: str | None, gold: str) -> bool:
        """Whether `answer` is equivalent to `gold`; no answer is never correct."""
        return answer is not None and self(answer, gold)


def parse_method(method: str) -> tuple[str, str | None]:
    """``"weighted:orm"`` -> ``("weighted", "orm")``; ``"majority"`` -> ``("majority", None)``."""
    kind, sep, scorer = method.partition(":")
    if kind in PLAIN_METHODS and not sep:
        return kind, None
    if kind in SCORED_METHODS and scorer:
        return kind, scorer
    raise ValueError(
        f"unknown re-ranking method {method!r}; use one of {', '.join(PLAIN_METHODS)}, "
        f"or {' / '.join(f'{k}:<scorer>' for k in SCORED_METHODS)}"
    )


def ns_up_to(n_max: int) -> list[int]:
    """1, 2, 4, ... up to `n_max`, and `n_max` itself when it is not a power of two."""
    if n_max < 1:
        raise ValueError(f"n_max must be at least 1, got {n_max}")
    ns = [2**k for k in range(n_max.bit_length()) if 2**k <= n_max]
    if ns[-1] != n_max:
        ns.append(n_max)
    return ns


def subset_rng(seed: int, problem_id: str, n: int) -> random.Random:
    """A generator seeded from (seed, problem id, N) by `stable_seed`: the same subsets in every process."""
    return random.Random(stable_seed("e2h.rerank", seed, problem_id, n))


def subsets(
    n_max: int, n: int, num_subsets: int, rng: random.Random, exhaustive: bool = False
) -> Iterable[tuple[int, ...]]:
    """Index subsets of size `n` out of `n_max`, each in increasing order.

    All C(n_max, n) of them when `exhaustive` or when there are no more than `num_subsets` (exact, and no
    dearer than sampling; n == n_max gives the one full set); otherwise `num_subsets` subsets drawn
    uniformly, each without replacement. Indices stay in sample order so that ties ("first group", "first
    sample") break the same way as on the full list.
    """
    if not 1 <= n <= n_max:
        raise ValueError(f"subset size {n} is outside 1..{n_max} (the number of samples)")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be at least 1, got {num_subsets}")
    total = math.comb(n_max, n)
    if exhaustive or total <= num_subsets:
        if total > MAX_EXHAUSTIVE_SUBSETS:
            raise ValueError(f"C({n_max}, {n}) = {total} subsets is too many to enumerate; sample them instead")
        return itertools.combinations(range(n_max), n)
    return (tuple(sorted(rng.sample(range(n_max), n))) for _ in range(num_subsets))


def choose(
    method: str, answers: Sequence[str | None], scores: Mapping[str, Sequence[float]], equivalent: Equivalence
) -> str | None:
    """The answer a voting method ("majority", "weighted:<s>", "best_of_n:<s>") picks from these samples."""
    kind, scorer = parse_method(method)
    if kind == "majority":
        return majority_vote(answers, equivalent)
    if scorer not in scores:
        raise ValueError(f"method {method!r} needs scores from {scorer!r}; scorers present: {sorted(scores)}")
    if kind == "weighted":
        return weighted_vote(answers, scores[scorer], equivalent)
    if kind == "best_of_n":
        return best_of_n(answers, scores[scorer])
    raise ValueError(f"{method!r} does not choose one answer")


def problem_accuracy(
    problem: ProblemSamples,
    method: str,
    n: int,
    num_subsets: int = 20,
    seed: int = 0,
    *,
    exhaustive: bool = False,
    cache: GradingCache | None = None,
) -> float:
    """One problem's accuracy of `method` at N = `n`, averaged over subsets of its samples.

    ``mean`` is the fraction of correct samples among all N_max, for every N: it is exactly the expected
    per-sample accuracy of a uniform subset, so sampling it would only add noise. ``pass`` scores a subset 1
    when any of its samples is correct. The others grade the chosen answer against the gold answer.
    """
    cache = cache if cache is not None else GradingCache()
    kind, _ = parse_method(method)
    correct = [cache.correct(a, problem.gold) for a in problem.answers]
    if kind == "mean":
        return sum(correct) / len(correct)
    total, count = 0.0, 0
    for subset in subsets(len(problem.answers), n, num_subsets, subset_rng(seed, problem.problem_id, n), exhaustive):
        if kind == "pass":
            total += any(correct[i] for i in subset)
        else:
            answers = [problem.answers[i] for i in subset]
            scores = {name: [values[i] for i in subset] for name, values in problem.scores.items()}
            total += cache.correct(choose(method, answers, scores, cache), problem.gold)
        count += 1
    return total / count


def accuracy_at_n(
    problems: Sequence[ProblemSamples],
    method: str,
    n: int,
    num_subsets: int = 20,
    seed: int = 0,
    *,
    exhaustive: bool = False,
    cache: GradingCache | None = None,
) -> float:
    """Accuracy of `method` with N = `n` samples: averaged over subsets per problem, then over problems.

    Methods: ``majority``, ``weighted:<scorer>``, ``best_of_n:<scorer>``, ``pass`` (any sample correct:
    the ceiling) and ``mean`` (single-sample accuracy: the N = 1 baseline). Subsets come from
    :func:`subsets` with :func:`subset_rng` (seed, problem id, N), so every method sees the same subsets of
    a problem and the comparison between methods is paired. Pass one `cache` to several calls to share
    the grader's answers.
    """
    if not problems:
        raise ValueError("no problems to measure")
    cache = cache if cache is not None else GradingCache()
    return sum(
        problem_accuracy(p, method, n, num_subsets, seed, exhaustive=exhaustive, cache=cache) for p in problems
    ) / len(problems)


def methods_for(scorers: Iterable[str]) -> list[str]:
    """The report's methods in table order: baseline, voting, each scorer's two methods, ceiling."""
    scored = [f"{kind}:{name}" for name in scorers for kind in SCORED_METHODS]
    return ["mean", "majority", *scored, "pass"]


def accuracy_by_subset(
    problems: Sequence[ProblemSamples],
    method: str,
    n: int,
    num_subsets: int = 20,
    seed: int = 0,
    *,
    exhaustive: bool = False,
    cache: GradingCache | None = None,
) -> dict[str, tuple[float, int]]:
    """`accuracy_at_n` for every report subset at once: label -> (accuracy, number of problems).

    Labels are those of `e2h.data.records.subset_keys` ("all", "easy", "hard", "level_3"...); each problem is
    measured once and counted in its three subsets.
    """
    cache = cache if cache is not None else GradingCache()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for p in problems:
        acc = problem_accuracy(p, method, n, num_subsets, seed, exhaustive=exhaustive, cache=cache)
        for label in subset_keys(p.level):
            sums[label] = sums.get(label, 0.0) + acc
            counts[label] = counts.get(label, 0) + 1
    return {label: (sums[label] / counts[label], counts[label]) for label in sums}
