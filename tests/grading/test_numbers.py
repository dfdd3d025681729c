r"""Numbers, collections and intervals: the comparison rules of docs/grading.md ("When two answers are equal")."""

from __future__ import annotations

import pytest

from e2h.grading import is_equivalent


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        # Exact values compare exactly: no tolerance can separate tiny exact numbers.
        (r"\frac{1}{3^{80}}", r"\frac{1}{3^{81}}", False),  # plain math-verify: equal (its evalf(chop=True))
        (r"\frac{\pi}{10^{20}}", r"\frac{\pi}{10^{21}}", False),
        (r"2^{100}", r"2^{100}+1", False),
        (r"\frac{1}{3^{80}}", r"3^{-80}", True),
        (r"\frac{1}{2^{100}}", r"2^{-100}", True),
        (r"\frac{2}{6}", r"\frac{1}{3}", True),
        (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True),
        (r"\infty", r"-\infty", False),
        (r"2^{99}\sqrt{2}", r"2^{99}\sqrt{2}+1", False),  # a relative tolerance would call these equal
        (r"2^{99}\sqrt{2}", r"2^{98}\sqrt{8}", True),
        # A decimal: 6 decimal places (math-verify's float_rounding) and 3 significant digits.
        (r"\frac{1}{3}", "0.333333", True),
        (r"\frac{1}{3}", "0.3333", False),
        (r"\frac{1}{81}", "0.012346", True),
        ("0.000123", r"\frac{1234}{10^7}", True),
        ("0.0000002", "0.0000001", False),  # both round to 0.000000: plain math-verify calls them equal
        (r"2\cdot 10^{-10}", r"10^{-10}", False),
    ],
)
def test_numbers(gold: str, pred: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        # Tuples keep their order; sets and bare answer lists do not; the reference decides.
        ("(1, 2)", "(2, 1)", False),
        ("(1, 2, 3)", "(1, 2, 3)", True),
        (r"\{1, 2\}", r"\{2, 1\}", True),
        ("1, 2", "2, 1", True),
        ("1, 2, 3", "3, 1, 2", True),
        ("(1, 2)", "2, 1", False),
        ("(1, 2)", r"\{2, 1\}", False),
        (r"\{2, 1\}", "(1, 2)", True),
        ("2, 1", "(1, 2)", True),
        ("(1,2), (3,4)", "(3,4), (1,2)", True),
        ("(1,2), (3,4)", "(2,1), (4,3)", False),
        # Intervals never equal a number, except a one-point interval.
        ("[0, 1]", "0.5", False),
        ("1", "[1, 1]", True),
        ("2", r"\{2\}", True),
        ("[1, 2]", "(1, 2)", False),
        ("[1, 3)", "[1, 3]", False),
        # A relation reference accepts its set as an interval, not the other way round.
        ("x > 0", r"(0, \infty)", True),
        (r"(0, \infty)", "x > 0", False),
    ],
)
def test_collections_and_intervals(gold: str, pred: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected
