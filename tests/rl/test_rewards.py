"""Reward shaping of e2h.rl.rewards against numbers worked out by hand (the arithmetic is beside each)."""

from __future__ import annotations

import pytest
import torch

import e2h.rl.rewards as rewards_module
from e2h.rl.maths import place_rewards
from e2h.rl.rewards import (
    HIDDEN_ANSWER,
    PENALTY_NO_ANSWER,
    PENALTY_OFF_FORM,
    combine_rewards,
    format_penalty,
    orm_reward,
    outcome_reward,
    process_rewards,
    process_rewards_last,
    process_rewards_min,
    process_rewards_product,
)

SCORES = [0.9, 0.4, 0.6, 0.1]


def approx(values):
    return pytest.approx(values, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Outcome and format
# --------------------------------------------------------------------------------------------------


def test_outcome_reward_known_and_hidden_answers():
    assert outcome_reward("2", "2") == 1.0
    assert outcome_reward("\\dfrac{1}{2}", "\\frac12") == 1.0  # equal after normalisation
    assert outcome_reward(None, "2") == 0.0  # no answer
    assert outcome_reward("2", None) == 0.25  # hidden: the official constant
    assert outcome_reward("2", HIDDEN_ANSWER) == 0.25
    assert outcome_reward(None, " Unavailable ", hidden_value=0.5) == 0.5
    with pytest.raises(ValueError, match="blank gold"):
        outcome_reward("2", "  ")


def test_outcome_reward_asks_the_grader_with_prediction_first(monkeypatch):
    calls = []
    monkeypatch.setattr(rewards_module, "is_equivalent", lambda pred, gold: calls.append((pred, gold)) or False)
    assert outcome_reward("7", "5") == 0.0
    assert calls == [("7", "5")]  # is_equivalent(pred, gold) is asymmetric: order matters


@pytest.mark.parametrize(
    ("completion", "stopped", "expected"),
    [
        ("6+4=0 0+7\n\n0+7=7\n\n# Answer\n\n7", True, 0.0),  # the paper's form
        ("# Answer\n\n7", True, 0.0),  # the section alone
        ("x = 3\n\n# Answer\n\n\\boxed{3}</s>", True, 0.0),  # boxed inside the section is still the section
        ("so x = \\boxed{3}.", True, PENALTY_OFF_FORM),  # only MATH's \boxed form
        ("so x = 3\n\n## Answer: 3", True, PENALTY_OFF_FORM),  # a heading, not the paper's
        ("so x = \\boxed{3}\n\n# Answer\n\n", True, PENALTY_OFF_FORM),  # empty section, boxed answer above
        ("so x = 3\n\n# Answer\n\n", True, PENALTY_NO_ANSWER),  # empty section, nothing else
        ("I am not sure.", True, PENALTY_NO_ANSWER),
        ("0+7=7\n\n# Answer\n\n7", False, PENALTY_NO_ANSWER),  # cut by the length limit
    ],
)
def test_format_penalty(completion, stopped, expected):
    assert format_penalty(completion, stopped=stopped) == expected


def test_penalty_constants_are_the_documented_scale():
    assert (PENALTY_OFF_FORM, PENALTY_NO_ANSWER) == (-0.5, -1.0)


# --------------------------------------------------------------------------------------------------
# Process rewards
# --------------------------------------------------------------------------------------------------


def test_process_rewards_min_official_example():
    # running min 0.5: 0.9 -> 0; 0.4 < 0.5 -> 0.4 - 0.5 = -0.1 (min 0.4); 0.6 -> 0; 0.1 < 0.4 -> -0.3 (min 0.1)
    # bonus 0.25 / 4 = 0.0625 each
    assert process_rewards_min(SCORES) == approx([0.0625, -0.0375, 0.0625, -0.2375])
    # penalties telescope: -0.1 - 0.3 = 0.1 - 0.5 = min score - bound
    assert sum(process_rewards_min(SCORES, per_step_bonus=0.0)) == pytest.approx(0.1 - 0.5)


def test_process_rewards_min_edge_cases():
    # a score equal to the running minimum earns 0; above the bound nothing is penalised
    assert process_rewards_min([0.5, 0.7], per_step_bonus=0.0) == approx([0.0, 0.0])
    # bound 0.8: 0.7 -> -0.1 (min 0.7); 0.7 again -> 0; bonus 0.25 / 2 = 0.125
    assert process_rewards_min([0.7, 0.7], upper_bound=0.8) == approx([0.025, 0.125])
    assert process_rewards_min([]) == []
    with pytest.raises(ValueError, match="probabilities"):
        process_rewards_min([0.5, 2.3])  # a logit, not a sigmoid output
    with pytest.raises(ValueError, match="probabilities"):
        process_rewards_min([float("nan")])


def test_process_rewards_product():
    # running products 0.9, 0.36, 0.216, 0.0216; running min from 0.5:
    # 0.9 -> 0; 0.36 -> -0.14 (min 0.36); 0.216 -> -0.144 (min 0.216); 0.0216 -> -0.1944
    # plus 0.0625 each
    assert process_rewards_product(SCORES) == approx([0.0625, -0.0775, -0.0815, -0.1319])
    # penalties sum to product - bound: 0.0216 - 0.5 = -0.4784
    assert sum(process_rewards_product(SCORES, per_step_bonus=0.0)) == pytest.approx(-0.4784)


def test_process_rewards_last():
    # last step: min(0, 0.1 - 0.5) = -0.4; plus 0.0625 each
    assert process_rewards_last(SCORES) == approx([0.0625, 0.0625, 0.0625, -0.3375])
    # a last score above the bound is not penalised (bonus 0.25 / 2)
    assert process_rewards_last([0.1, 0.7]) == approx([0.125, 0.125])
    assert process_rewards_last([]) == []


def test_process_rewards_by_name():
    assert process_rewards(SCORES, "min") == process_rewards_min(SCORES)
    assert process_rewards(SCORES, "product") == process_rewards_product(SCORES)
    assert process_rewards(SCORES, "last") == process_rewards_last(SCORES)
    with pytest.raises(ValueError, match="unknown process-reward scheme"):
        process_rewards(SCORES, "mean")


def test_orm_reward():
    assert orm_reward(0.75) == 0.75
    assert orm_reward(0.25, center=0.5) == -0.25
    with pytest.raises(ValueError):
        orm_reward(float("nan"))


# --------------------------------------------------------------------------------------------------
# Glue
# --------------------------------------------------------------------------------------------------


def test_combine_rewards_places_steps_and_terminal():
    # steps end at tokens 2, 5, 7, 9; the last valid token is 9; outcome 1 (correct), penalty 0
    pairs = combine_rewards([2, 5, 7, 9], SCORES, 9, outcome=1.0, penalty=0.0)
    assert [p for p, _ in pairs] == [2, 5, 7, 9, 9]
    assert [r for _, r in pairs] == approx([0.0625, -0.0375, 0.0625, -0.2375, 1.0])
    # hidden answer (0.25), boxed only (-0.5), process rewards halved: the terminal -0.25 shares token 9
    pairs = combine_rewards([2, 5, 7, 9], SCORES, 9, outcome=0.25, penalty=-0.5, process_scale=0.5)
    dense = place_rewards([pairs], (1, 11), dtype=torch.float64)
    # token 9: 0.5 * -0.2375 + (0.25 - 0.5) = -0.11875 - 0.25 = -0.36875
    expected = [0, 0, 0.03125, 0, 0, -0.01875, 0, 0.03125, 0, -0.36875, 0]
    torch.testing.assert_close(dense, torch.tensor([expected], dtype=torch.float64), rtol=0, atol=1e-12)


def test_combine_rewards_without_process_rewards():
    # ORM run: only the terminal reward, the ORM score centred at 0.5 -> 0.9 - 0.5 = 0.4
    [(position, reward)] = combine_rewards([1, 3], [0.2, 0.3], 4, scheme=None, outcome=orm_reward(0.9, center=0.5))
    assert position == 4 and reward == pytest.approx(0.4)
    assert combine_rewards([], [], 0, scheme="none", outcome=0.0, penalty=-1.0) == [(0, -1.0)]


def test_combine_rewards_rejects_bad_positions():
    with pytest.raises(ValueError, match="2 step end positions but 1"):
        combine_rewards([1, 2], [0.5], 3)
    with pytest.raises(ValueError, match="increase strictly"):
        combine_rewards([2, 2], [0.5, 0.5], 3)
    with pytest.raises(ValueError, match="increase strictly"):
        combine_rewards([1, 4], [0.5, 0.5], 3)  # past the last token
    with pytest.raises(ValueError, match="increase strictly"):
        combine_rewards([-1], [0.5], 3)
