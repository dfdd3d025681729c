"""Solution scores from step scores, by hand: the aggregations, the empty solution, and the ORM's final-token
reading."""

import pytest

from e2h.eval.scoring import aggregate, default_reading, solution_score


def test_aggregations_by_hand():
    scores = [0.9, 0.5, 0.8]
    assert aggregate(scores, "min") == 0.5
    assert aggregate(scores, "product") == pytest.approx(0.36)  # 0.9 * 0.5 * 0.8
    assert aggregate(scores, "last") == 0.8
    assert aggregate(scores, "mean") == pytest.approx(2.2 / 3)


def test_single_step_is_its_own_score_and_no_step_scores_zero():
    for how in ("min", "product", "last", "mean"):
        assert aggregate([0.3], how) == pytest.approx(0.3)
        # an empty solution ranks below every scored one, not at the vacuous min (+inf) or product (1)
        assert aggregate([], how) == 0.0
    assert aggregate([], "min", empty=-1.0) == -1.0


def test_unknown_aggregation_is_refused():
    with pytest.raises(ValueError, match="median"):
        aggregate([0.5], "median")
    with pytest.raises(ValueError, match="median"):
        solution_score([0.5], 0.5, "median")


def test_orm_reads_the_final_token_and_prm_takes_the_min():
    assert default_reading("outcome") == "final"
    assert default_reading("process") == "min" and default_reading("both") == "min"
    assert solution_score([0.2, 0.9], 0.7, "final") == 0.7
    assert solution_score([0.2, 0.9], 0.7, "min") == 0.2
    with pytest.raises(ValueError, match="supervision"):
        default_reading("steps")
