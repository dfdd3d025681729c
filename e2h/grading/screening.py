"""Inputs sympy must never see: answers whose parsing or evaluation could run unboundedly (power towers,
huge exponents or factorials, deep nesting, very long text). Refused answers are compared as strings only."""

from __future__ import annotations

import re

from e2h.grading.normalization import _COMMAND_NAME

#: Longer answers are compared as strings only (MATH's longest reference answer has 159 characters).
MAX_ANSWER_CHARS: int = 1000
#: Deeper bracket nesting is compared as strings only (MATH's deepest reference answer nests 3 levels).
MAX_NESTING_DEPTH: int = 20
#: A literal exponent with this many digits or more is refused (2^{99999999} already costs ~0.5 s).
MAX_EXPONENT_DIGITS: int = 8
#: A literal factorial argument with this many digits or more is refused (999999! costs ~5 s).
MAX_FACTORIAL_DIGITS: int = 6

_DIGITS = re.compile(r"\d+")
_TRAILING_DIGITS = re.compile(r"\d+$")


def _group_after(s: str, i: int) -> str:
    """The argument starting at ``i``: a brace or parenthesis group, a ``\\command``, a number or one char."""
    n = len(s)
    while i < n and s[i].isspace():
        i += 1
    if i >= n:
        return ""
    c = s[i]
    if c in "{(":
        close_char = "}" if c == "{" else ")"
        depth = 0
        j = i
        while j < n:
            if s[j] == "\\":
                j += 2
                continue
            if s[j] == c:
                depth += 1
            elif s[j] == close_char:
                depth -= 1
                if depth == 0:
                    return s[i : j + 1]
            j += 1
        return s[i:]  # unclosed: everything after counts
    if c == "\\":
        m = _COMMAND_NAME.match(s, i)
        return m.group(0) if m else s[i : i + 2]
    m = _DIGITS.match(s, i)
    return m.group(0) if m else c


def _group_before(s: str, i: int) -> str:
    """The operand ending just before ``i`` (for a postfix ``!``): a number or a bracketed group."""
    j = i
    while j > 0 and s[j - 1].isspace():
        j -= 1
    if j == 0:
        return ""
    if s[j - 1] in "})":
        open_char = "{" if s[j - 1] == "}" else "("
        depth = 0
        k = j - 1
        while k >= 0:
            if s[k] == s[j - 1]:
                depth += 1
            elif s[k] == open_char:
                depth -= 1
                if depth == 0:
                    return s[k:j]
            k -= 1
        return s[:j]
    m = _TRAILING_DIGITS.search(s, 0, j)
    return m.group(0) if m else s[j - 1]


def _max_nesting(s: str) -> int:
    depth = deepest = 0
    for c in s:
        if c in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "})]":
            depth = max(depth - 1, 0)
    return deepest


def refusal_reason(s: str) -> str | None:
    """Why ``s`` must not reach sympy (it could run unboundedly), or None when it may.

    Refused: more than :data:`MAX_ANSWER_CHARS` characters; brackets nested deeper than
    :data:`MAX_NESTING_DEPTH`; a power tower (an exponent that itself holds ``^`` or ``**``, e.g.
    ``10^{10^{10}}``); a literal exponent of :data:`MAX_EXPONENT_DIGITS`+ digits; a factorial of a
    literal of :data:`MAX_FACTORIAL_DIGITS`+ digits or of anything holding a power or factorial.
    Refused answers are still graded, by normalised string equality only.
    """
    if len(s) > MAX_ANSWER_CHARS:
        return f"longer than {MAX_ANSWER_CHARS} characters"
    if _max_nesting(s) > MAX_NESTING_DEPTH:
        return f"brackets nested deeper than {MAX_NESTING_DEPTH}"
    for m in re.finditer(r"\^|\*\*", s):
        exponent = _group_after(s, m.end())
        following = s[s.find(exponent, m.end()) + len(exponent) :].lstrip()
        # 10^{10^{10}} nests the tower; 2**3**4 chains it (right-associative, so the same thing).
        if "^" in exponent or "**" in exponent or following.startswith(("^", "**")):
            return "power tower"
        if re.search(r"\d{%d,}" % MAX_EXPONENT_DIGITS, exponent):
            return f"exponent with {MAX_EXPONENT_DIGITS}+ digits"
    for m in re.finditer(r"!", s):
        operand = _group_before(s, m.start())
        if re.search(r"\d{%d,}" % MAX_FACTORIAL_DIGITS, operand):
            return f"factorial of a {MAX_FACTORIAL_DIGITS}+ digit number"
        if any(op in operand for op in ("^", "**", "!")):
            return "factorial of a power or factorial"
    return None
