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
    assert extract_answer(text) is None


def test_extract_deep_nesting_and_long_text_are_fast() -> None:
    deep = "\\boxed{" + "{" * 2000 + "x" + "}" * 2000 + "}"
    long_text = "blah " * 20000 + "\\boxed{7}"
    start = time.perf_counter()
    assert extract_answer(deep) == "{" * 2000 + "x" + "}" * 2000
    assert extract_answer(long_text) == "7"
    assert time.perf_counter() - start < 1.0
