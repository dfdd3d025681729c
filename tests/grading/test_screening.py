"""Screening: the answers sympy must never see are refused, ordinary ones are not."""

from __future__ import annotations

import pytest

from e2h.grading import refusal_reason

TOWER_4 = "10^{10^{10^{10}}}"
TOWER_5 = "10^{10^{10^{10^{10}}}}"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (TOWER_4, "power tower"),
        (TOWER_5, "power tower"),
        ("2**3**4", "power tower"),
        ("9999999!", "factorial"),
        ("(10^{5})!", "factorial"),
        ("2^{123456789}", "exponent"),
        ("{" * 30 + "1" + "}" * 30, "nested"),
        ("1" * 1001, "longer"),
    ],
)
def test_refusal_reason_refuses_hostile_inputs(answer: str, reason: str) -> None:
    assert reason in (refusal_reason(answer) or "")


@pytest.mark.parametrize("answer", [r"2^{10}", r"\frac{1}{2004!}", "10^{100}", "(n+1)!", r"e^{i\pi}", "99999!"])
def test_refusal_reason_accepts_ordinary_answers(answer: str) -> None:
    assert refusal_reason(answer) is None
