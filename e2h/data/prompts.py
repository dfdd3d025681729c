"""The prompt format: the only home of its headings, separators and stop strings, and the two formats.

Two formats:

- ``paper`` (default), the authors' format: prompt ``# Question\\n\\n{problem}\\n\\n# Solution\\n\\n``; the
  response is the solution's steps separated by blank lines, then ``\\n\\n# Answer\\n\\n{answer}``.
- ``boxed``: an instruction asking for the final answer in ``\\boxed{}``; the response is the solution
  ending in ``\\boxed{answer}`` (MATH's own style).

Both are graded by ``e2h.grading.extract_answer``, which reads the ``# Answer`` section and ``\\boxed{}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PROMPT_FORMATS = ("paper", "boxed")
# The paper format's pieces; this module is their only home.
QUESTION_HEADING = "# Question"
SOLUTION_HEADING = "# Solution"
ANSWER_HEADING = "# Answer"
STEP_SEPARATOR = "\n\n"
"""Between the steps of a solution (a blank line), and between a heading and its text."""
EXEMPLAR_SEPARATOR = "\n\n\n"
"""Between few-shot exemplars; generation can stop on it."""
STOP_STRINGS = (EXEMPLAR_SEPARATOR, QUESTION_HEADING)
"""Where a generator stops: a prompt-only (few-shot) one would go on to write the next exemplar."""


def answer_section(answer: str) -> str:
    """The paper's answer section, as it ends a solution: ``"\\n\\n# Answer\\n\\n{answer}"``."""
    return f"{STEP_SEPARATOR}{ANSWER_HEADING}{STEP_SEPARATOR}{answer}"


class Solved(Protocol):
    """What a response is made from: a problem record's solution and answer (`e2h.data.records.Problem`; a
    protocol, so the format, the floor of the package, imports nothing of e2h)."""

    solution: str
    answer: str


@dataclass(frozen=True)
class PromptFormat:
    """How a problem becomes a prompt and a reference solution becomes a training response."""

    name: str = "paper"

    def __post_init__(self) -> None:
        if self.name not in PROMPT_FORMATS:
            raise ValueError(f"unknown prompt format {self.name!r}; choose one of {PROMPT_FORMATS}")

    def prompt(self, problem: str) -> str:
        if self.name == "paper":
            sep = STEP_SEPARATOR
            return f"{QUESTION_HEADING}{sep}{problem}{sep}{SOLUTION_HEADING}{sep}"
        return (
            f"{problem}\n\nSolve the problem step by step, separating steps by a blank line, "
            "and put the final answer in \\boxed{}.\n\nSolution:\n\n"
        )

    def response(self, record: Solved) -> str:
        """The target text for a record: its solution in this format's answer convention."""
        solution = record.solution.strip()
        if self.name == "paper":
            return solution + answer_section(record.answer)
        if "\\boxed" in solution or "\\fbox" in solution:
            return solution
        return f"{solution}\n\nThe final answer is $\\boxed{{{record.answer}}}$."


def question_from_prompt(prompt: str) -> str | None:
    """The question a prompt in the paper format asks last: the text between its last ``# Question`` heading
    and the ``# Solution`` heading after it (few-shot exemplars come before it). None if there is none."""
    opening, closing = QUESTION_HEADING + STEP_SEPARATOR, STEP_SEPARATOR + SOLUTION_HEADING
    start = prompt.rfind(opening)
    if start < 0:
        return None
    start += len(opening)
    end = prompt.find(closing, start)
    return None if end < 0 else prompt[start:end]
