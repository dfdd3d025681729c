r"""The final answer in a solution: the ``# Answer`` section of the paper's format, else the last
``\boxed{...}`` / ``\fbox{...}`` (MATH's own style)."""

from __future__ import annotations

import re

from e2h.data.prompts import ANSWER_HEADING

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


def _last_box(text: str) -> str | None:
    r"""Content of the last outermost ``\boxed``/``\fbox`` in ``text``; None when none or the last is unclosed.

    Boxes are read left to right and a box's inside is skipped, so ``\boxed{\boxed{5}}`` yields
    ``\boxed{5}``'s outer content. An unclosed last box (a truncated generation) yields None rather than
    an earlier box: the model's final statement is incomplete, so it has no final answer.
    """
    result: str | None = None
    pos = 0
    while True:
        m = _BOX_OPENER.search(text, pos)
        if m is None:
            return result
        box = _box_at(text, m.end())
        if box is None:
            return None
        result, pos = box


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


def extract_answer(text: str) -> str | None:
    r"""The final answer in a solution, or None when it has none.

    Precedence:

    1. The last ``# Answer`` heading (the paper's format, ``...\n\n# Answer\n\n{answer}``): its section is
       the model's declared final answer and wins over any ``\boxed`` in the steps above it (those may be
       intermediate results). A ``\boxed{}`` inside the section is unwrapped; enclosing ``$...$`` removed.
       The section ends at the first blank line, a following heading or an end-of-sequence marker.
    2. When there is no ``# Answer`` heading, or its section is empty (e.g. generation stopped right after
       the heading), the last ``\boxed{...}`` / ``\fbox{...}`` / ``\boxed 9`` in the whole text, with
       nested braces matched. An empty box yields ``""`` (there is a box, it is just empty).
    """
    section = _answer_section(text)
    if section:
        boxed = _last_box(section)
        answer = boxed if boxed is not None else section
        return _strip_math_delimiters(answer).strip()
    boxed = _last_box(text)
    return None if boxed is None else boxed.strip()
