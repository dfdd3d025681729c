"""Answer extraction and equivalence grading (e2h.grading), including its time bound."""

from __future__ import annotations

import os
import threading
import time

import pytest
from conftest import shared_file

from e2h.grading import workers
from e2h.grading import (
    VERIFY_TIMEOUT_S,
    extract_answer,
    is_equivalent,
    normalize_answer,
    refusal_reason,
)
from e2h.data.files import read_jsonl

# A call that reaches math-verify may also have to start a helper first (normally ~0.4 s; this machine's
# cores are shared, so allow more). Screened calls return in microseconds.
START_MARGIN_S = 20.0
# Killing and reaping a stuck helper after its deadline.
KILL_MARGIN_S = 2.0

# --------------------------------------------------------------------------------------------------
# extract_answer
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So the answer is $\boxed{\frac{\sqrt{3}}{2}}$.", r"\frac{\sqrt{3}}{2}"),  # nested braces
        (r"$\boxed{\{1, \{2, 3\}\}}$", r"\{1, \{2, 3\}\}"),  # escaped set braces are not grouping
        (r"First \boxed{1}, then finally \boxed{2}.", "2"),  # the last box
        (r"Therefore $\boxed 9$.", "9"),  # brace-less form
        (r"Hence \boxed {17}.", "17"),  # space before the brace
        (r"The result is \fbox{7}", "7"),
        (r"\boxed{\boxed{5}}", r"\boxed{5}"),  # outermost box, inner kept verbatim
        (r"We get \boxed{\text{(C)}}", r"\text{(C)}"),
        (r"Empty: \boxed{}", ""),  # a box, but empty
    ],
)
def test_extract_boxed(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


MATRIX_ON_TWO_LINES = "\\begin{pmatrix} 1 \\\\\n 2 \\end{pmatrix}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step one.\n\nStep two.\n\n# Answer\n\n5", "5"),
        # The section is the declared final answer: it wins over a box in the steps above.
        ("We find \\boxed{4} first.\n\nThen 5.\n\n# Answer\n\n5", "5"),
        ("Steps.\n\n# Answer\n\n\\boxed{12}</s>", "12"),  # box inside the section unwrapped, EOS cut
        ("Steps.\n\n# Answer\n\n$\\frac12$\n\n\n# Question\n\nWhat is 2+2?", "\\frac12"),  # next exemplar cut
        ("Steps.\n\n# Answer\n\n  -3  <|endoftext|>garbage", "-3"),
        ("# Answer\n\n1\n\n# Answer\n\n2", "2"),  # the last heading
        ("Steps ending in \\boxed{3}.\n\n# Answer\n\n", "3"),  # empty section: fall back to the box
        ("Steps.\n\n# Answer\n\n" + MATRIX_ON_TWO_LINES, MATRIX_ON_TWO_LINES),  # no blank line inside
    ],
)
def test_extract_answer_section(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "No final answer here, 42 is just a number.",
        r"Truncated: \boxed{12",  # the last box is unclosed: no final answer
        r"\boxedsymbol{3} is another command",
        "",
    ],
)
def test_extract_none(text: str) -> None:
    assert extract_answer(text) is None


def test_extract_deep_nesting_and_long_text_are_fast() -> None:
    deep = "\\boxed{" + "{" * 2000 + "x" + "}" * 2000 + "}"
    long_text = "blah " * 20000 + "\\boxed{7}"
    start = time.perf_counter()
    assert extract_answer(deep) == "{" * 2000 + "x" + "}" * 2000
    assert extract_answer(long_text) == "7"
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------------------------------
# normalize_answer
# --------------------------------------------------------------------------------------------------


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
# Screening and the time bound
# --------------------------------------------------------------------------------------------------

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


def _run_in_thread(fn, bound_s: float):
    """Run fn() in a threading.Thread; assert it finished within bound_s; return (result, seconds)."""
    box: dict = {}

    def target() -> None:
        start = time.perf_counter()
        box["result"] = fn()
        box["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound_s)
    assert not thread.is_alive(), f"still running after {bound_s} s"
    return box["result"], box["seconds"]


@pytest.mark.parametrize(
    "pred",
    [
        TOWER_4,
        TOWER_5,
        "(" * 2000 + "1" + ")" * 2000,
        "{" * 2000 + "1" + "}" * 2000,
        "9" * 100_000,
        "9999999!",
    ],
    ids=["tower4", "tower5", "parens2000", "braces2000", "100k_chars", "factorial"],
)
def test_hostile_inputs_return_within_bound_from_a_thread(pred: str) -> None:
    result, seconds = _run_in_thread(lambda: is_equivalent(pred, "1"), VERIFY_TIMEOUT_S + START_MARGIN_S)
    assert result is False
    assert seconds < 1.0  # screened: never handed to math-verify, so not even the helper deadline is spent


def test_helper_timeout_kills_and_restarts_the_helper() -> None:
    # Bypass screening to exercise the last line of defence: math-verify on a power tower never returns.
    _run_in_thread(lambda: is_equivalent("0.5", r"\frac{1}{2}"), START_MARGIN_S)  # a ready helper
    pool = workers._pool_for_this_process()
    timeouts_before = pool.timeouts
    result, seconds = _run_in_thread(
        lambda: workers._verify_with_helper(["1"], [TOWER_5], timeout=1.0), 1.0 + START_MARGIN_S
    )
    assert result is False
    # A helper was ready, so nothing but the 1 s deadline and a SIGKILL stand between call and return.
    assert 1.0 <= seconds < 1.0 + KILL_MARGIN_S
    assert pool.timeouts == timeouts_before + 1
    # The stuck helper is gone; the next call gets a live one and grades correctly.
    assert is_equivalent("0.25", r"\frac14") is True


def test_threads_share_the_helpers() -> None:
    pairs = [("0.5", r"\frac{1}{2}", True), (r"\{3,1\}", r"\{1,3\}", True), ("0.3", r"\frac{1}{3}", False)]
    results: list[list[bool]] = [[] for _ in range(3)]

    def grade(i: int) -> None:
        results[i] = [is_equivalent(p, g) for p, g, _ in pairs]

    threads = [threading.Thread(target=grade, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * VERIFY_TIMEOUT_S + START_MARGIN_S)
        assert not t.is_alive()
    assert results == [[expected for _, _, expected in pairs]] * 3


class _GradingDataset:
    """A map-style dataset whose items are grades computed inside the DataLoader worker process."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        start = time.perf_counter()
        hostile = is_equivalent(TOWER_5, "1")
        verified = is_equivalent("0.5", r"\frac{1}{2}")  # needs math-verify: a helper in this process
        return {
            "hostile": hostile,
            "verified": verified,
            "seconds": time.perf_counter() - start,
            "own_pool": workers._pool is not None and workers._pool.pid == os.getpid(),
            "pid": os.getpid(),
        }


def test_grading_inside_a_dataloader_worker() -> None:
    torch_data = pytest.importorskip("torch.utils.data")
    is_equivalent("0.5", r"\frac{1}{2}")  # the parent has a helper the (forked) worker must not reuse
    loader = torch_data.DataLoader(_GradingDataset(), batch_size=None, num_workers=1, timeout=60)
    (item,) = list(loader)
    assert item["pid"] != os.getpid()  # it really ran in the daemonic worker process
    assert item["hostile"] is False
    assert item["verified"] is True
    assert item["own_pool"] is True
    assert item["seconds"] < VERIFY_TIMEOUT_S + START_MARGIN_S


# --------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------


def test_math500_gold_solutions_grade_as_correct() -> None:
    path = shared_file("math/test.jsonl")
    rows = [row for _, row in read_jsonl(path)]
    assert len(rows) == 500
    wrong = [
        row["unique_id"] for row in rows if not is_equivalent(extract_answer(row["solution"]), row["answer"])
    ]
    assert wrong == []
    normal_forms = [normalize_answer(row["answer"]) for row in rows]
    assert [n for n in normal_forms if normalize_answer(n) != n] == []  # normal forms are fixed points
