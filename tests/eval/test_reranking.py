"""Re-ranking (majority, weighted, best-of-N) and accuracy against N.

Every expected number below is worked out by hand in the comment beside it. The two hand-made problems:

- A (level 1, gold "2"):       answers ["2", "2", "5", None];  orm [0.5, 0.25, 0.875, 1.0];  prm [0.75, 0.5, 0.25, 0.125]
- B (level 4, gold "\\frac12"): answers ["0.5", "7", "7", "\\frac{1}{2}"]; orm [0.25, 0.5, 0.5, 0.75]; prm [0.875, 0.125, 0.25, 0.5]

Scores are dyadic fractions, so sums compare exactly. With 4 samples, C(4, 1) = 4, C(4, 2) = 6 and C(4, 4) = 1
subsets are all no more than the default 20, so every N is averaged over all its subsets: exact.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from fractions import Fraction

import pytest

from e2h.eval.reranking import (
    GradingCache,
    ProblemSamples,
    accuracy_at_n,
    accuracy_by_subset,
    best_of_n,
    majority_vote,
    ns_up_to,
    parse_method,
    subset_rng,
    subsets,
    weighted_vote,
)

HALF_SPELLINGS = ("\\frac12", "0.5", "\\frac{1}{2}")

A = ProblemSamples(
    problem_id="A",
    level=1,
    gold="2",
    answers=("2", "2", "5", None),
    scores={"orm": (0.5, 0.25, 0.875, 1.0), "prm": (0.75, 0.5, 0.25, 0.125)},
)
B = ProblemSamples(
    problem_id="B",
    level=4,
    gold="\\frac12",
    answers=("0.5", "7", "7", "\\frac{1}{2}"),
    scores={"orm": (0.25, 0.5, 0.5, 0.75), "prm": (0.875, 0.125, 0.25, 0.5)},
)


def close(value: float, fraction: Fraction) -> bool:
    return math.isclose(value, float(fraction), abs_tol=1e-12)


# --------------------------------------------------------------------------------------------------
# Choosing one answer
# --------------------------------------------------------------------------------------------------


def test_majority_groups_equivalent_spellings_and_ignores_missing_answers():
    # 1/2 spelled three ways (3 votes) beats "3" (2 votes); two None answers would win if None voted.
    answers = ["\\frac12", "3", "0.5", "3", "\\frac{1}{2}", None, None]
    assert majority_vote(answers) == "\\frac12"  # the group's first spelling


def test_majority_tie_goes_to_the_group_seen_first():
    assert majority_vote(["3", "0.5", "\\frac12", "3"]) == "3"  # 2 votes each; "3" first
    assert majority_vote(["0.5", "3", "3", "\\frac12"]) == "0.5"  # same votes, 1/2 first
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_weighted_vote_sums_scores_per_equivalence_group():
    answers = ["3", "\\frac12", "0.5", "\\frac{1}{2}", None]
    # 1/2: 0.25 * 3 = 0.75 < "3": 0.9 -> "3" (majority would say 1/2); None's 5.0 never votes.
    assert weighted_vote(answers, [0.9, 0.25, 0.25, 0.25, 5.0]) == "3"
    # 1/2: 0.75 > "3": 0.625 -> 1/2, in its first spelling.
    assert weighted_vote(answers, [0.625, 0.25, 0.25, 0.25, 5.0]) == "\\frac12"


def test_weighted_vote_tie_goes_to_the_group_seen_first():
    # 1/2: 0.25 + 0.25 = 0.5 == "3": 0.5
    assert weighted_vote(["0.5", "3", "\\frac12"], [0.25, 0.5, 0.25]) == "0.5"
    assert weighted_vote(["3", "0.5", "\\frac12"], [0.5, 0.25, 0.25]) == "3"
    assert weighted_vote([None], [1.0]) is None
    with pytest.raises(ValueError, match="2 answers but 1 scores"):
        weighted_vote(["1", "2"], [0.5])


def test_best_of_n_takes_the_single_best_sample():
    # The 1/2 group sums to 1.0 but its best sample (0.5) loses to "3" (0.6): no grouping here.
    assert best_of_n(["3", "0.5", "\\frac12"], [0.6, 0.5, 0.5]) == "3"
    # Tie at 0.75 between samples 1 and 3 -> the first, in its own spelling.
    assert best_of_n(["3", "0.5", None, "\\frac12"], [0.5, 0.75, 0.25, 0.75]) == "0.5"
    # The best-scored sample has no answer: best-of-N answers nothing (no fall-back to the runner-up).
    assert best_of_n(["3", "0.5", None, "\\frac12"], [0.5, 0.75, 0.9, 0.75]) is None
    assert best_of_n([], []) is None


# --------------------------------------------------------------------------------------------------
# N values, methods, subsets
# --------------------------------------------------------------------------------------------------


def test_ns_up_to():
    assert ns_up_to(1) == [1]
    assert ns_up_to(2) == [1, 2]
    assert ns_up_to(5) == [1, 2, 4, 5]
    assert ns_up_to(12) == [1, 2, 4, 8, 12]
    assert ns_up_to(16) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError):
        ns_up_to(0)


def test_parse_method():
    assert parse_method("majority") == ("majority", None)
    assert parse_method("best_of_n:prm") == ("best_of_n", "prm")
    for bad in ("weighted", "weighted:", "majority:orm", "vote"):
        with pytest.raises(ValueError, match="unknown re-ranking method"):
            parse_method(bad)


def test_subsets_enumerate_when_cheaper_and_sample_otherwise():
    rng = subset_rng(0, "p", 4)
    assert list(subsets(4, 4, 20, rng)) == [(0, 1, 2, 3)]  # n == N_max: the one full set
    assert len(list(subsets(4, 2, 20, rng))) == 6  # C(4, 2) = 6 <= 20: all of them
    drawn = list(subsets(16, 4, 20, subset_rng(0, "p", 4)))  # C(16, 4) = 1820 > 20: 20 random ones
    assert len(drawn) == 20
    for s in drawn:
        assert len(set(s)) == 4 and list(s) == sorted(s) and all(0 <= i < 16 for i in s)
    assert drawn == list(subsets(16, 4, 20, subset_rng(0, "p", 4)))  # same seed, same subsets
    assert drawn != list(subsets(16, 4, 20, subset_rng(1, "p", 4)))
    assert drawn != list(subsets(16, 4, 20, subset_rng(0, "q", 4)))
    with pytest.raises(ValueError, match="outside 1..4"):
        list(subsets(4, 5, 20, rng))


def test_subset_seed_does_not_depend_on_the_process_hash_salt():
    code = "from e2h.eval.reranking import subset_rng, subsets; print(list(subsets(16, 4, 3, subset_rng(7, 'p', 4))))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": salt},
            capture_output=True, text=True, check=True,
        ).stdout
        for salt in ("1", "2")
    }
    assert outputs == {str(list(subsets(16, 4, 3, subset_rng(7, "p", 4)))) + "\n"}


# --------------------------------------------------------------------------------------------------
# Accuracy against N (exact: every subset)
# --------------------------------------------------------------------------------------------------


def test_mean_and_n1_are_the_fraction_of_correct_samples():
    for problem in (A, B):  # 2 of 4 samples correct in both
        for method in ("mean", "majority", "weighted:orm", "best_of_n:prm", "pass"):
            assert accuracy_at_n([problem], method, 1) == 0.5
    assert accuracy_at_n([A], "mean", 4) == 0.5  # the baseline does not move with N


def test_majority_at_n_problem_a():
    # N=2, the 6 pairs of ["2","2","5",None]: {0,1} 2, {0,2} tie -> 2, {0,3} 2, {1,2} tie -> 2, {1,3} 2, {2,3} 5
    assert close(accuracy_at_n([A], "majority", 2), Fraction(5, 6))
    # N=3: every triple holds a "2" that is first or not outvoted -> 4/4
    assert accuracy_at_n([A], "majority", 3) == 1.0
    assert accuracy_at_n([A], "majority", 4) == 1.0


def test_majority_at_n_problem_b_with_equivalent_spellings():
    # ["0.5","7","7","\frac{1}{2}"]: {0,1} tie -> 0.5 ok, {0,2} ok, {0,3} ok, {1,2} 7, {1,3} tie -> 7, {2,3} tie -> 7
    assert close(accuracy_at_n([B], "majority", 2), Fraction(3, 6))
    assert accuracy_at_n([B], "majority", 4) == 1.0  # 2-2 tie, the 1/2 group first
    # averaged over the problems: (5/6 + 3/6) / 2
    assert close(accuracy_at_n([A, B], "majority", 2), Fraction(2, 3))


def test_weighted_and_best_of_n_at_n():
    # A, orm [0.5, 0.25, 0.875, 1.0]: N=2 pairs {0,1} 2 ok, {0,2} 5 (0.875 > 0.5), {0,3} 2 (None does not vote),
    # {1,2} 5, {1,3} 2, {2,3} 5 -> 3/6; N=3 only {0,1,3} ok -> 1/4; N=4: 2 has 0.75 < 5 has 0.875 -> 0
    assert close(accuracy_at_n([A], "weighted:orm", 2), Fraction(3, 6))
    assert close(accuracy_at_n([A], "weighted:orm", 3), Fraction(1, 4))
    assert accuracy_at_n([A], "weighted:orm", 4) == 0.0
    # best-of-N: N=2 only {0,1} picks a "2"; the None sample (1.0) wins every pair it is in; N=4 it wins -> 0
    assert close(accuracy_at_n([A], "best_of_n:orm", 2), Fraction(1, 6))
    assert accuracy_at_n([A], "best_of_n:orm", 4) == 0.0
    # B, orm [0.25, 0.5, 0.5, 0.75]: N=4 weighted 1/2: 1.0 ties 7: 1.0 -> 1/2 first; best: sample 3 "\frac{1}{2}"
    assert accuracy_at_n([B], "weighted:orm", 4) == 1.0
    assert accuracy_at_n([B], "best_of_n:orm", 4) == 1.0
    # best N=2: {0,1} 7, {0,2} 7, {0,3} ok, {1,2} tie -> sample 1 "7", {1,3} ok, {2,3} ok -> 3/6
    assert close(accuracy_at_n([B], "best_of_n:orm", 2), Fraction(3, 6))
    with pytest.raises(ValueError, match="needs scores from 'rm'"):
        accuracy_at_n([A], "weighted:rm", 2)


def test_pass_at_n():
    # A: a pair misses only when it is {2,3}: 5/6; B: only {1,2}: 5/6
    assert close(accuracy_at_n([A], "pass", 2), Fraction(5, 6))
    assert close(accuracy_at_n([B], "pass", 2), Fraction(5, 6))
    assert accuracy_at_n([A, B], "pass", 3) == 1.0  # any 3 of 4 include a correct one


def test_accuracy_by_subset_splits_by_level_and_group():
    result = accuracy_by_subset([A, B], "majority", 2)
    assert set(result) == {"level_1", "easy", "level_4", "hard", "all"}
    assert close(result["easy"][0], Fraction(5, 6)) and result["easy"][1] == 1
    assert close(result["level_4"][0], Fraction(1, 2)) and result["level_4"][1] == 1
    assert close(result["all"][0], Fraction(2, 3)) and result["all"][1] == 2


def test_random_subsets_are_deterministic_by_seed():
    # four "1"s first, then eight distinct wrong answers
    p = ProblemSamples("r", 3, "1", ("1",) * 4 + tuple(str(10 + i) for i in range(8)))
    # C(12, 3) = 220 > 7: 7 random subsets, so each value is a multiple of 1/7
    values = {seed: accuracy_at_n([p], "majority", 3, num_subsets=7, seed=seed) for seed in range(6)}
    assert values == {seed: accuracy_at_n([p], "majority", 3, num_subsets=7, seed=seed) for seed in range(6)}
    assert all(close(v * 7, Fraction(round(v * 7))) for v in values.values())
    assert len(set(values.values())) > 1  # the seed does change the subsets
    # exhaustive: all 220 triples. The wrong answers never repeat, so a triple with two "1"s votes "1", and one
    # with a single "1" is a three-way tie won by the "1", which comes first (indices 0-3). So a triple is
    # right exactly when it holds a "1": 1 - C(8, 3) / C(12, 3) = 1 - 56/220
    assert close(accuracy_at_n([p], "majority", 3, exhaustive=True), Fraction(164, 220))


def test_grader_is_called_once_per_ordered_pair():
    calls: list[tuple[str, str]] = []

    def equal(pred: str, ref: str) -> bool:
        calls.append((pred, ref))
        return pred == ref

    p = ProblemSamples("c", 1, "a", ("a", "b", "a", "b"), {"s": (0.5, 0.25, 0.125, 1.0)})
    cache = GradingCache(equal)
    for method in ("mean", "majority", "weighted:s", "best_of_n:s", "pass"):
        for n in (1, 2, 3, 4):
            accuracy_at_n([p], method, n, num_subsets=50, exhaustive=True, cache=cache)
    # only ("a","a"), ("b","a"), ("a","b"), ("b","b") can ever be asked, however many subsets
    assert sorted(calls) == [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]
    assert cache.calls == 4
    accuracy_at_n([p], "majority", 2, cache=cache)
    assert cache.calls == 4


# --------------------------------------------------------------------------------------------------
# Bad input: clear errors naming file, line and field
# --------------------------------------------------------------------------------------------------


def test_majority_vote_groups_equivalent_answers_and_breaks_ties_by_first_appearance():
    from e2h.eval.reranking import group_answers, majority_vote

    # "1/2" spelled three ways outvotes "3" said twice; None never votes.
    answers = ["3", "\\frac12", None, "0.5", "3", "\\frac{1}{2}"]
    assert group_answers(answers) == [[0, 4], [1, 3, 5]]
    assert majority_vote(answers) == "\\frac12"
    assert majority_vote(["7", "2", "2", "7"]) == "7"  # 2-2 tie: "7" appeared first
    assert majority_vote([None, None]) is None
