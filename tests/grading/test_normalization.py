"""The fast path's normal form of an answer, and its speed on long hostile strings."""

from __future__ import annotations

import time

import pytest

from e2h.grading import normalize_answer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"\dfrac{9}{7}", r"\frac{9}{7}"),
        (r"\frac12", r"\frac{1}{2}"),
        (r"\frac{3}4", r"\frac{3}{4}"),
        (r"\sqrt2", r"\sqrt{2}"),
        (".5", "0.5"),
        ("2.50", "2.5"),
        ("3/4", r"\frac{3}{4}"),
        (r"10,\!000", "10000"),
        (r"\$1{,}250.", "1250"),
        ("1,000", "1000"),
        ("(1,000)", "(1, 000)"),  # a tuple keeps its comma (list commas read ", ")
        ("81, 256", "81, 256"),  # a list (space after the comma) is not a thousands number
        (r"\left( 1,2 \right)", "(1, 2)"),
        (r"45^\circ, 135^\circ", "45, 135"),  # stays a list of two angles, not 45135
        (r"90^{\circ}", "90"),
        (r"45^\circ", "45"),
        (r"25\%", "25"),
        ("x = 3", "3"),
        (r"5\text{ cm}^2", "5"),
        (r"12\sqrt{13}\text{ feet}", r"12\sqrt{13}"),
        ("240 ways.", "240"),
        (r"\text{(B)}", "B"),
        (r"7, -2, \text{ and } -5", "7, -2, -5"),
        (r"\text{(E)},", "E"),
        (r"\frac\pi4", r"\frac{\pi}{4}"),
        (r"\approx 8.24 \text{ mph}", "8.24"),
        (r"\begin{pmatrix} 1 \\ \phantom -1 \end{pmatrix}", r"\begin{pmatrix}1\\1\end{pmatrix}"),
        (r"\pi r^2", r"\pi r^2"),  # the space that separates a command from a letter survives
        (r"\begin{bmatrix} 1 & 2 \end{bmatrix}", r"\begin{pmatrix}1&2\end{pmatrix}"),
        (r"$\boxed{4}$", "4"),
        (r"$\text{(C)}$.", "C"),  # a sentence's full stop after the math
        (r"\$18.90", "18.9"),
        ("58,500.", "58500"),
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected
    assert normalize_answer(expected) == expected  # a normal form is a fixed point


def test_normalize_answer_is_fast_on_long_hostile_strings() -> None:
    hostile = ["5" + "\\text{ cm}" * 10_000, "ab " * 33_000, "$" * 100_000, "1," * 50_000, "x=" * 50_000]
    start = time.perf_counter()
    for s in hostile:
        normalize_answer(s)
    assert time.perf_counter() - start < 2.0
