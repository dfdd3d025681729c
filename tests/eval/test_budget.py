"""The generation budget against the reference solutions (e2h.eval.budget): a level whose correct solutions
cannot be written stops the run with the numbers; one where only some cannot is warned about."""

import pytest

from e2h.eval.budget import BudgetTooShort, check_generation_budget

LENGTHS = {1: [30, 30], 4: [70, 75, 80], 5: [90, 94]}


def test_every_reference_fits():
    assert check_generation_budget(LENGTHS, 94, "max_new_tokens") is None


def test_a_budget_below_the_longest_reference_warns_with_the_counts():
    message = check_generation_budget(LENGTHS, 93, "max_new_tokens")
    assert "level 5: 1 of 2 reference solutions (50%) are longer (median 92, longest 94 tokens)" in message
    assert "level 4" not in message and "at least 94" in message


def test_a_budget_below_a_levels_median_stops_the_run_naming_every_short_level():
    # the first tiny study's mistake: 64 tokens, while every level-4 and level-5 solution needs more
    with pytest.raises(BudgetTooShort, match=r"max_new_tokens = 64 tokens") as error:
        check_generation_budget(LENGTHS, 64, "max_new_tokens")
    assert "level 4: 3 of 3" in str(error.value) and "level 5: 2 of 2" in str(error.value)
    assert "budget_check: warn" in str(error.value)
    # 74: one level-4 solution of three fits, the median (75) does not
    with pytest.raises(BudgetTooShort):
        check_generation_budget(LENGTHS, 74, "max_new_tokens")


def test_warn_mode_returns_the_message_and_off_checks_nothing():
    assert "level 4: 3 of 3" in check_generation_budget(LENGTHS, 64, "max_new_tokens", mode="warn")
    assert check_generation_budget(LENGTHS, 64, "max_new_tokens", mode="off") is None
    with pytest.raises(ValueError, match="budget_check must be one of"):
        check_generation_budget(LENGTHS, 64, "max_new_tokens", mode="loud")
