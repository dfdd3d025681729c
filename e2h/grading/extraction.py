r"""The final answer in a solution, by this precedence (see :func:`extract_answer`):

0. A reasoning trace ``<think>...</think>`` is skipped: the answer is after the last ``</think>``; a trace
   that never closed (cut by the token budget) has no answer.
1. The ``# Answer`` section of the paper's format.
2. Else the last ``\boxed{...}`` / ``\fbox{...}`` (MATH's own style); boxes side by side joined only by
   "and", "or" or commas (``$\boxed{-2}$ and $\boxed{1}$``) are read together as the list ``-2, 1``.
3. Else (only with ``free_text=True``) the last mathematical expression of the free text, as math-verify
   extracts it ("Therefore $x \geq 5$ is the solution." gives ``x \geq 5``), run in a bounded helper
   process like every math-verify call (see the package docstring). Callers grading a completion cut by
   the token budget pass ``free_text=False``: an unfinished text earns no answer from its last formula.
"""

from __future__ import annotations

import re

from e2h.data.prompts import ANSWER_HEADING
from e2h.grading.workers import VERIFY_TIMEOUT_S, _extract_with_helper, check_timeout

# Text that ends a generation: tokenizer end markers some decoders leave in the text.
_EOS_MARKERS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<eos>")


_BOX_OPENER = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# Any Markdown heading named like the paper's answer heading ("# Answer", "## Answer:"), in any case.
_ANSWER_HEADING = re.compile(
    r"^[ \t]*#{1,6}[ \t]*" + re.escape(ANSWER_HEADING.lstrip("#").strip()) + r"\b[ \t]*:?", re.IGNORECASE | re.MULTILINE
)
_SECTION_END = re.compile(r"\n[ \t]*\n|\n[ \t]*#")


def _match_brace(text: str, open_pos: int) -> int | None:
    r"""Index of the ``}`` closing the ``{`` at ``open_pos``, or None when unclosed.

    Backslash escapes are skipped as pairs, so ``\{`` / ``\}`` (set braces) do not count and ``\\`` (a
    line break) does not escape the brace after it. Iterative, so any nesting depth is fine.
    """
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _box_at(text: str, name_end: int) -> tuple[str, int] | None:
    r"""Content and end index of the box whose command ends at ``name_end``; None when malformed/unclosed.

    Handles ``\boxed{...}`` (brace matched, spaces allowed before the brace) and ``\boxed 9`` (a single
    space-delimited token, cut at ``$`` as in ``$\boxed 9$``).
    """
    j = name_end
    n = len(text)
    while j < n and text[j] in " \t":
        j += 1
    if j < n and text[j] == "{":
        close = _match_brace(text, j)
        if close is None:
            return None
        return text[j + 1 : close], close + 1
    # Brace-less form: one token, up to whitespace or "$"; sentence punctuation after it is not part of it.
    k = j
    while k < n and not text[k].isspace() and text[k] != "$":
        k += 1
    token = text[j:k].rstrip(".,;")
    if not token:
        return None
    return token, k


# Boxes side by side that state one list answer: the text between them is short, on one line, has no
# sentence end, and is either symbols only (``\boxed{1}\boxed{2}``) or holds a comma or "and"/"or"
# (``\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}``) and no word of a correction ("First
# \boxed{1}, then finally \boxed{2}" and "\boxed{1}, no: \boxed{2}" keep only the last box).
_MAX_BOX_GAP = 60
_JOINER = re.compile(r",|;|\b(?:and|or)\b")
_CORRECTION_WORD = re.compile(
    r"\b(?:then|no|not|but|wait|actually|instead|correct(?:ed|ion)?|wrong|so|hence|thus|therefore|final(?:ly)?|"
    r"answer|sorry|oops|mistake|rather)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n\s*\n")


def _boxes_form_list(gap: str) -> bool:
    """Whether two boxes separated by ``gap`` state one list answer (see the comment above)."""
    if len(gap) > _MAX_BOX_GAP or _SENTENCE_END.search(gap) or _CORRECTION_WORD.search(gap):
        return False
    return bool(_JOINER.search(gap)) or not re.search(r"[A-Za-z0-9]", gap.replace("\\quad", ""))


def _last_box(text: str) -> str | None:
    r"""Content of the last outermost ``\boxed``/``\fbox`` in ``text``; None when none or the last is unclosed.

    Boxes are read left to right and a box's inside is skipped, so ``\boxed{\boxed{5}}`` yields
    ``\boxed{5}``'s outer content. An unclosed last box (a truncated generation) yields None rather than
    an earlier box: the model's final statement is incomplete, so it has no final answer. Boxes right before
    the last one that state one list with it (``\boxed{-2} \quad\text{and}\quad \boxed{1}``; see
    `_boxes_form_list`) are part of the answer: their contents are joined with ``", "`` in order.
    """
    boxes: list[tuple[int, str, int]] = []  # (start, content, end)
    pos = 0
    while True:
        m = _BOX_OPENER.search(text, pos)
        if m is None:
            break
        box = _box_at(text, m.end())
        if box is None:
            return None
        boxes.append((m.start(), box[0], box[1]))
        pos = box[1]
    if not boxes:
        return None
    group = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        gap = text[prev[2] : group[0][0]]
        if not _boxes_form_list(gap):
            break
        group.insert(0, prev)
    if len(group) == 1:
        return group[0][1]
    return ", ".join(content.strip() for _, content, _ in group)


def _strip_math_delimiters(s: str) -> str:
    r"""Remove enclosing ``$$..$$``, ``$..$``, ``\(..\)``, ``\[..\]`` (up to three layers)."""
    for _ in range(3):  # bounded, so "$$$$...$" cannot cost quadratic time
        t = s.strip()
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(t) >= len(left) + len(right) and t.startswith(left) and t.endswith(right):
                inner = t[len(left) : len(t) - len(right)]
                # "$a$ and $b$" is not one math span: refuse when the inner text has the delimiter.
                if left == "$" and "$" in inner.replace("\\$", ""):
                    continue
                t = inner
                break
        if t == s.strip():
            return t
        s = t
    return s.strip()


def _answer_section(text: str) -> str | None:
    """Text of the last ``# Answer`` section, up to a blank line, a heading or an end marker; None if absent."""
    last = None
    for last in _ANSWER_HEADING.finditer(text):
        pass
    if last is None:
        return None
    section = text[last.end() :]
    for marker in _EOS_MARKERS:
        cut = section.find(marker)
        if cut >= 0:
            section = section[:cut]
    section = section.lstrip(" \t\r\n")
    # The answer is one paragraph: what follows a blank line (a new few-shot "# Question", chatter) is not
    # part of it. A matrix spread over several lines has no blank line inside, so it survives.
    end = _SECTION_END.search(section)
    if end is not None:
        section = section[: end.start()]
    return section.strip()


# The closing statement of Minerva's format ("Final Answer: The final answer is $X$. I hope it is correct.").
_FINAL_ANSWER_STATEMENT = re.compile(r"final answer is", re.IGNORECASE)
_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def _after_reasoning_trace(text: str) -> str | None:
    """The text after the last ``</think>``; None when a ``<think>`` trace never closed; else ``text``."""
    close = text.rfind(_THINK_CLOSE)
    if close >= 0:
        return text[close + len(_THINK_CLOSE) :]
    if _THINK_OPEN in text:
        return None
    return text


def _free_text_answer(text: str, timeout: float) -> str | None:
    """The last mathematical expression of ``text`` (up to its first end marker), by math-verify."""
    for marker in _EOS_MARKERS:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    if not text.strip():
        return None
    answer = _extract_with_helper(text, timeout)
    if answer is None:
        return None
    answer = answer.strip()
    if not answer.endswith(".."):  # sentence punctuation a plain expression kept ("3/4."), not an ellipsis
        answer = answer.rstrip(".,;:").rstrip()
    return answer or None


def extract_answer(text: str, *, free_text: bool = True, timeout: float = VERIFY_TIMEOUT_S) -> str | None:
    r"""The final answer in a solution, or None when it has none.

    Precedence:

    0. A ``<think>...</think>`` reasoning trace is skipped: only the text after the last ``</think>`` is
       read. A ``<think>`` that never closed (the budget ran out while thinking) means no answer.

    1. The last ``# Answer`` heading (the paper's format, ``...\n\n# Answer\n\n{answer}``): its section is
       the model's declared final answer and wins over any ``\boxed`` in the steps above it (those may be
       intermediate results). A ``\boxed{}`` inside the section is unwrapped; enclosing ``$...$`` removed.
       The section ends at the first blank line, a following heading or an end-of-sequence marker.
    2. When there is no ``# Answer`` heading, or its section is empty (e.g. generation stopped right after
       the heading), the last ``\boxed{...}`` / ``\fbox{...}`` / ``\boxed 9`` in the whole text, with
       nested braces matched. An empty box yields ``""`` (there is a box, it is just empty). A "The final
       answer is ..." statement (Minerva's format) after the last box wins over it, read as in 3. Boxes side by
       side joined by "and", "or" or commas form one list answer (``\boxed{-2}, \boxed{1}`` -> ``-2, 1``).
    3. When there is neither, and ``free_text`` is true: the last mathematical expression of the text as
       math-verify extracts it (LaTeX in ``$...$``/``\(...\)``/``\[...\]``, else a plain number or
       expression; an "answer:" / "final answer is" anchor wins over a later plain formula). The returned
       string is that expression's text (``"Therefore $x \geq 5$ is the solution."`` -> ``x \geq 5``). It
       runs in math-verify's helper process within ``timeout`` CPU seconds (only the last
       ``MAX_FREE_TEXT_CHARS`` characters are searched); running out means no answer.

    Pass ``free_text=False`` for a completion cut by the token budget (``Completion.clipped``): a text that
    never finished must not earn a lucky answer from whatever formula it was writing when it stopped. It
    keeps the declared forms (1 and 2), which are what the model chose to state as its answer.
    """
    check_timeout(timeout)
    after = _after_reasoning_trace(text)
    if after is None:
        return None
    text = after
    section = _answer_section(text)
    if section:
        boxed = _last_box(section)
        answer = boxed if boxed is not None else section
        return _strip_math_delimiters(answer).strip()
    boxed = _last_box(text)
    statement = None
    for statement in _FINAL_ANSWER_STATEMENT.finditer(text):
        pass
    last_box_start = max((m.start() for m in _BOX_OPENER.finditer(text)), default=-1)
    if boxed is not None and statement is not None and statement.start() > last_box_start:
        # Minerva's "Final Answer: The final answer is $X$." after the last box restates or corrects it.
        return _free_text_answer(text[statement.start() :], timeout) if free_text else None
    if boxed is not None:
        return boxed.strip()
    if not free_text:
        return None
    if _BOX_OPENER.search(text):
        return None  # an unclosed last box: the final statement was cut off
    return _free_text_answer(text, timeout)
