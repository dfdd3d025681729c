"""Step AUROC on a generator's own samples with exact labels (e2h.eval.step_auroc), by hand."""

import pytest

from e2h.data.prompts import PromptFormat
from e2h.eval.step_auroc import labelled_steps, step_auroc

PROMPT = PromptFormat("paper").prompt("6+4+7-5+9")


def _row(level, steps, scores, pid="synthetic/L3/test/0"):
    return {"problem_id": pid, "level": level, "prompt": PROMPT, "steps": steps, "step_scores": scores}


def test_labels_stop_after_the_first_wrong_step_and_need_a_checker():
    rows = [
        _row(3, ["6+4=0 0+7-5+9", "0+7=8 8-5+9", "8-5=3 3+9"], [0.9, 0.2, 0.8]),  # right, result slip, (unlabelled)
        _row(3, ["6+4=0 0+7-5+9"], [0.7], pid="math/123"),  # no exact checker: skipped
        {"problem_id": "synthetic/L3/test/0", "level": 3, "prompt": PROMPT, "score": 0.4},  # no step scores: skipped
    ]
    assert labelled_steps(rows) == [(3, 0.9, None, 1), (3, 0.2, "result", 2)]


def test_auroc_by_level_and_by_kind():
    rows = [
        _row(4, ["6+4=0 0+7-5+9", "0+7=7 7-5+9"], [0.9, 0.6]),  # two right steps
        _row(4, ["6+4=1 1+7-5+9"], [0.5]),  # result slip scored 0.5
        _row(5, ["3+4=7 7-5+9"], [0.95]),  # operation slip scored above every right step
        _row(5, ["6+4=0 0+7-5+9"], [0.8]),
    ]
    figures = step_auroc(labelled_steps(rows))
    # level 4: right {0.9, 0.6} vs wrong {0.5}: every pair ordered right -> 1.0
    # Position alone: right steps at positions 1 and 2, the wrong one at 1. Earlier scores higher, so the
    # pair (1 right, 1 wrong) ties (0.5) and (2 right, 1 wrong) is misordered (0): 0.25.
    assert figures["by_subset"]["level_4"] == {"auroc": 1.0, "position_auroc": 0.25, "steps": 3, "wrong": 1}
    # level 5: right {0.8} vs wrong {0.95} -> 0.0; hard: right {0.9, 0.6, 0.8} vs wrong {0.5, 0.95}: 3 of 6 pairs
    assert figures["by_subset"]["level_5"]["auroc"] == 0.0
    assert figures["by_subset"]["hard"]["auroc"] == pytest.approx(0.5)
    # by kind, against all right steps: result 0.5 below all three; operation 0.95 above all three
    assert figures["by_kind"] == {"operation": {"auroc": 0.0, "wrong": 1}, "result": {"auroc": 1.0, "wrong": 1}}
    assert step_auroc(labelled_steps(rows[:1]))["by_subset"]["level_4"]["auroc"] is None  # one class only


def test_position_alone_is_the_reference_a_scorer_must_beat():
    # Two samples that go wrong at their second step, one right throughout: every wrong step comes after a
    # right first step, so position alone ranks 4 of the 6 (right, wrong) pairs right and ties 2: 5/6.
    rows = [
        _row(4, ["6+4=0 0+7-5+9", "0+7=8 8-5+9"], [0.5, 0.5]),
        _row(4, ["6+4=0 0+7-5+9", "0+7=1 1-5+9"], [0.5, 0.5]),
        _row(4, ["6+4=0 0+7-5+9"], [0.5]),
    ]
    figures = step_auroc(labelled_steps(rows))["by_subset"]["level_4"]
    assert figures["auroc"] == 0.5 and figures["position_auroc"] == pytest.approx(1.0)
