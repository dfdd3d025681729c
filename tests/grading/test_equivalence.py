"""Equivalence grading (e2h.grading.is_equivalent) by category: the fast path, math-verify, missing answers,
and MATH500's gold solutions."""

from __future__ import annotations

import pytest

from e2h.data.files import read_jsonl
from e2h.grading import extract_answer, is_equivalent, normalize_answer

# --------------------------------------------------------------------------------------------------
# is_equivalent: fast path and math-verify, by category
# --------------------------------------------------------------------------------------------------

EQUIVALENT = [
    (r"\frac{1}{2}", "0.5"),  # fraction vs decimal
    ("0.5", ".5"),
    (r"\frac12", r"\frac{1}{2}"),
    (r"\dfrac{9}{7}", r"\frac{9}{7}"),
    (r"5\text{ cm}", "5"),  # units
    (r"\text{Friday}", "friday"),  # word answer, case-insensitive
    (r"90^\circ", "90"),  # degrees
    (r"10\%", "10"),  # percent
    (r"10\%", "0.1"),
    ("x = 3", "3"),  # variable prefix
    ("3", "y=3"),
    ("1,000", "1000"),  # thousands separator
    (r"\$32,\!348", "32348"),
    ("[1,2)", r"\left[1, 2\right)"),  # interval
    (r"(-\infty, 3]", r"(-\infty,3]"),
    (r"\{1,2\}", r"\{2,1\}"),  # set order
    ("1, 2, 3", "3,2,1"),  # unordered list of solutions
    ("(1,2)", "(1, 2)"),  # tuple
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{bmatrix}1\\2\end{bmatrix}"),  # matrix
    (r"\begin{pmatrix} \frac12 & 0 \end{pmatrix}", r"\begin{pmatrix} 0.5 & 0 \end{pmatrix}"),
    (r"2\frac{1}{2}", r"\frac52"),  # mixed number
    (r"\sqrt2", r"\sqrt{2}"),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
    (r"\infty", r"\infty"),
    (r"2\pi", r"\pi \cdot 2"),  # pi
    (r"\pi", "3.14159265"),
    (r"\text{(A)}", "A"),  # multiple choice
    ("(A)", "A"),
    (r"\text{A, C}", "C, A"),  # several letters: a set
    (r"45^\circ, 135^\circ", "135, 45"),  # a list of angles, any order
    (r"\text{Softball, Kickball, Picnic}", "softball, kickball, picnic"),
    ("7", r"\boxed{7}"),
]

NOT_EQUIVALENT = [
    (r"\frac{1}{2}", "0.25"),
    ("0.5", "5"),
    (r"5\text{ cm}", "6"),
    (r"\text{Devon}", "Doven"),  # sympy alone would call these equal (products of the same symbols)
    (r"90^\circ", "91"),
    (r"10\%", "100"),
    ("x = 3", "-3"),
    ("1,000", "100"),
    ("[1,2)", "[1,2]"),  # open vs closed end
    (r"(-\infty, 3]", "(-\\infty, 3)"),
    (r"\{1,2\}", r"\{1,3\}"),
    ("(1,2)", "(2,1)"),  # tuples are ordered
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}"),
    (r"2\frac{1}{2}", r"\frac{2}{2}"),
    (r"\sqrt2", "2"),
    (r"\infty", r"-\infty"),
    (r"\pi", "3.14"),
    (r"\text{(A)}", "B"),
    ("7", "7x"),
    (r"45^\circ, 135^\circ", "45135"),  # a list is not a thousands-separated number
    (r"\text{Softball, Kickball, Picnic}", "Kickball, Softball, Picnic"),  # a ranking: order matters
]


@pytest.mark.parametrize(("gold", "pred"), EQUIVALENT)
def test_equivalent(gold: str, pred: str) -> None:
    assert is_equivalent(pred, gold) is True


@pytest.mark.parametrize(("gold", "pred"), NOT_EQUIVALENT)
def test_not_equivalent(gold: str, pred: str) -> None:
    assert is_equivalent(pred, gold) is False


def test_missing_answers_are_never_equivalent() -> None:
    assert is_equivalent(None, "3") is False
    assert is_equivalent("", "3") is False
    assert is_equivalent("   ", "3") is False
    assert is_equivalent("", "") is False  # an empty \boxed{} in the reference grades nothing correct
    assert is_equivalent(r"\$", r"\$") is True  # identical strings, even if they normalise to nothing
    assert is_equivalent(r"\$", "%") is False


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout"):
        is_equivalent("1", "1", timeout=0)


# --------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------


def test_math500_gold_solutions_grade_as_correct(shared_file) -> None:
    path = shared_file("math/test.jsonl")
    rows = [row for _, row in read_jsonl(path)]
    assert len(rows) == 500
    wrong = [
        row["unique_id"] for row in rows if not is_equivalent(extract_answer(row["solution"]), row["answer"])
    ]
    assert wrong == []
    normal_forms = [normalize_answer(row["answer"]) for row in rows]
    assert [n for n in normal_forms if normalize_answer(n) != n] == []  # normal forms are fixed points


def test_stray_math_delimiters_make_an_answer_malformed():
    from e2h.grading.equivalence import has_stray_math_delimiters

    assert is_equivalent("$5$", "5") and is_equivalent("$$5$$", "5")
    assert not is_equivalent("$" * 999 + "5", "5") and not is_equivalent("5$", "5")
    assert has_stray_math_delimiters("$$$$5") and not has_stray_math_delimiters(r"\$5") and not has_stray_math_delimiters("$x$, $y$")


def test_a_verdict_does_not_depend_on_the_machines_load():
    """A helper descheduled for longer than the CPU budget (what a loaded machine does to it) still answers:
    the budget is CPU time, so the same pair gets the same verdict on an idle and on a busy machine."""
    import os
    import signal
    import threading
    import time

    from e2h.grading import workers

    assert is_equivalent(r"\frac{1}{2}", "0.5", timeout=1.0)  # starts a helper, warm
    (helper,) = workers._pool_for_this_process()._idle[-1:]
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("v", is_equivalent(r"\frac{2}{4}", "0.5", timeout=1.0)))
    os.kill(helper.proc.pid, signal.SIGSTOP)
    try:
        thread.start()
        time.sleep(2.0)  # twice the budget in wall-clock time, no CPU used
    finally:
        os.kill(helper.proc.pid, signal.SIGCONT)
    thread.join(30)
    assert result == {"v": True}


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        # A whole solution passed as the prediction (or the reference) is graded by its final answer.
        (r"Therefore $x \geq 5$ is the solution.", r"x \ge 5", True),
        (r"Thus, the area of the trapezoid is \(\boxed{189}\) square centimeters.", "189", True),
        (r"We get $x = 2$, so the answer is $\boxed{3}$.", "2", False),
        ("# Answer\n\n7", "7", True),
        ("<think>maybe 6</think>It is $7$.", "7", True),
        ("5", r"We find $x = 5$ and the answer is $\boxed{5}$.", True),
    ],
)
def test_a_completion_is_graded_by_its_final_answer(pred: str, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", False), ("$5$", False), (r"\boxed{5}", False), (r"$\boxed{5}$", False), ("5 dollars", False),
        (r"\$5", False), (r"\text{Monday}", False), ("$x$, $y$", False),
        (r"x = \boxed{5}.", True), (r"Therefore $x \geq 5$ is the solution.", True), (r"\boxed{1}\boxed{2}", True),
        ("# Answer\n\n5", True), ("<think>a</think>5", True),
    ],
)
def test_looks_like_completion(text: str, expected: bool) -> None:
    from e2h.grading.equivalence import looks_like_completion

    assert looks_like_completion(text) is expected
