"""Final-answer extraction: the answer section, boxes, what is not an answer, and speed on hostile text."""

from __future__ import annotations

import time

import pytest

from e2h.grading import extract_answer


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
    assert extract_answer(text, free_text=False) is None
    if "42" not in text:  # no formula in the free text either (an unclosed box is a cut final statement)
        assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("No final answer here, 42 is just a number.", "42"),
        (r"Therefore $x \geq 5$ is the solution.", r"x \geq 5"),
        ("So the answer is 3/4.", "3/4"),
        (r"The matrix is $\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}$.", r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}"),
        ("We get $x = 2$, so $y = 7$.", "y = 7"),  # the last expression
        ("Final Answer: The final answer is $12$. I hope it is correct.", "12"),  # Minerva's format
        ("<think>maybe $5$? no, 6</think>The result is $6$.", "6"),  # the answer is after the trace
        ("<think>I think it is $5$ but let me check", None),  # a trace cut by the budget: no answer
        ("<think>It is 5.</think>", None),  # nothing after the trace
        ("Nothing to see here.", None),
    ],
)
def test_free_text_fallback(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected
    assert extract_answer(text, free_text=False) is None  # a clipped completion earns nothing from free text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("# Answer\n\n5\n", "5"),  # the answer section beats everything after the trace
        (r"<think>\boxed{4}</think> so \boxed{5}", "5"),  # a box inside the trace is not the answer
        (r"$\boxed{-2}$ and $\boxed{1}$", "-2, 1"),  # boxes stating one list are read together
        (r"\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}", "(3, 3), (1, 1)"),
        (r"$\boxed{1}\boxed{2}$", "1, 2"),
        (r"First \boxed{1}, then finally \boxed{2}.", "2"),  # a correction keeps the last box
        (r"$\boxed{1}$, no: $\boxed{2}$", "2"),
        (r"Step: \boxed{9}. Final Answer: The final answer is $10$. I hope it is correct.", "10"),
    ],
)
def test_precedence(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_a_final_answer_statement_after_a_box_is_not_read_from_a_clipped_text() -> None:
    assert extract_answer(r"\boxed{9}. The final answer is $1", free_text=False) is None


def test_extract_deep_nesting_and_long_text_are_fast() -> None:
    deep = "\\boxed{" + "{" * 2000 + "x" + "}" * 2000 + "}"
    long_text = "blah " * 20000 + "\\boxed{7}"
    start = time.perf_counter()
    assert extract_answer(deep) == "{" * 2000 + "x" + "}" * 2000
    assert extract_answer(long_text) == "7"
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "text",
    [
        "So the answer is $10^{10^{10^{10^{10}}}}$.",  # read as text, never evaluated
        "$" * 20000,
        "(" * 5000 + "1",
        "\\frac{" * 2000,
        "x = " + "1+" * 3000 + "1",
        "word " * 20000 + "so 7",  # only the tail is searched
    ],
)
def test_free_text_fallback_is_bounded(text: str) -> None:
    start = time.monotonic()
    extract_answer(text, timeout=1.0)
    # 1 CPU second (+ the helper's rounding and grace), or a helper start; generous for a loaded machine.
    assert time.monotonic() - start < 30
