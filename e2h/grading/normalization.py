r"""The fast path of grading: a canonical string per answer (Hendrycks-style normalisation, extended), so
that most equal answers are found equal without math-verify."""

from __future__ import annotations

import re

from e2h.grading.extraction import _BOX_OPENER, _box_at, _strip_math_delimiters

_ROW_BREAK = "\x00"  # stands for "\\" inside normalize_answer
_TEXT_MACRO = r"\\(?:text|textnormal|textrm|textit|textbf|textup|textsf|mbox|mathrm|mathit|mathbf)"
_TEXT_GROUP = re.compile(_TEXT_MACRO + r"\s*\{([^{}]*)\}")
_TRAILING_TEXT_UNIT = re.compile(_TEXT_MACRO + r"\s*\{([^{}]*)\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*\.?\s*$")
_UNIT_WORDS = re.compile(r"[A-Za-z][A-Za-z .'\-]*")
_TRAILING_PLAIN_UNIT = re.compile(r"\s+([A-Za-z]{2,}[A-Za-z. ]*?)\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*\.?\s*$")
# Words that are mathematics, not units, when they trail a number ("2 pi").
_NOT_UNITS = frozenset({"pi", "sqrt", "inf", "infty", "infinity", "cdot", "times", "and", "or"})
_EXPLICIT_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s*|\\,)(?=\d{3}(?!\d))")
_PLAIN_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_SPACING = re.compile(r"\\[,;:> ]|\\q?quad(?![A-Za-z])|~")
_SIZING = re.compile(r"\\(?:left|right|middle|[Bb]igg?[lr]?)(?![A-Za-z])")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ(?![A-Za-z])|\\degree(?![A-Za-z])|°")
_CONNECTOR_TEXT = re.compile(_TEXT_MACRO + r"\s*\{\s*(?:and|or)\s*\}")
_CONNECTOR_WORD = re.compile(r"(?<=[\s,])(?:and|or)(?=\s)")
_REPEATED_COMMAS = re.compile(r",(?:\s*,)+")
_MULTIPLE_CHOICE = re.compile(r"\(?\s*([A-Z])\s*\)?")
_SPACES = re.compile(r"(\\[A-Za-z]+)?\s+(?=(.?))", re.DOTALL)
_COMMA = re.compile(r"\s*,\s*")
_PHANTOM = re.compile(r"\\[hv]?phantom\s*(?:\{[^{}]*\}|\\[A-Za-z]+|[^\s{])")
_LEADING_APPROX = re.compile(r"^(?:\\approx|\\sim)(?![A-Za-z])")
_VARIABLE_PREFIX = re.compile(r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?=(?P<rhs>[^=]+)")
# One TeX argument without braces: a digit, a letter or a command (\frac\pi4 is \frac{\pi}{4}).
_TOKEN = r"(\\[A-Za-z]+|[0-9A-Za-z])"
_SQRT_TOKEN = re.compile(r"\\sqrt\s*" + _TOKEN)
_FRAC_TWO_TOKENS = re.compile(r"\\frac\s*" + _TOKEN + r"\s*" + _TOKEN)
_FRAC_BRACED_TOKEN = re.compile(r"\\frac\s*\{([^{}]*)\}\s*" + _TOKEN)
_FRAC_TOKEN_BRACED = re.compile(r"\\frac\s*" + _TOKEN + r"\s*\{")
_SLASH_FRACTION = re.compile(r"(-?)(\d+)/(\d+)")
_BARE_DECIMAL_POINT = re.compile(r"(?<![\d\\}])\.(?=\d)")
_DECIMAL = re.compile(r"[-+]?\d+\.\d+")
_COMMAND_NAME = re.compile(r"\\[A-Za-z]+")
def _strip_trailing_text_units(s: str) -> str:
    r"""Drop trailing ``\text{ cm}``-style units (optionally squared) that follow a non-empty value."""
    for _ in range(3):  # "5\text{ cm}\text{ }" needs two rounds; bounded so it stays linear
        m = _TRAILING_TEXT_UNIT.search(s)
        if m is None:
            return s
        body = s[: m.start()].rstrip()
        unit = m.group(1).strip(" .")
        if not body or not _UNIT_WORDS.fullmatch(unit):
            return s
        s = body
    return s


def _strip_trailing_plain_units(s: str) -> str:
    """Drop trailing unit words ("5 cm", "12 ways") after a purely numeric value.

    Only when the value has no letters of its own outside LaTeX commands, so "2 x y" or "x + ab" keep
    their letters.
    """
    # Searched in the tail only: the pattern is anchored at the end, and trying it from every position of
    # a long string would be quadratic. No unit is 80 characters long.
    m = _TRAILING_PLAIN_UNIT.search(s, max(0, len(s) - 80))
    if m is None or m.group(1).split()[0].casefold() in _NOT_UNITS:
        return s
    body = s[: m.start()].rstrip()
    if not body or body[-1] not in "0123456789})":
        return s
    if re.search(r"[A-Za-z]", _COMMAND_NAME.sub("", body)):
        return s
    return body


def _strip_sentence_period(s: str) -> str:
    """Drop one full stop ending the answer ("5." -> "5"), but not an ellipsis ("1, 2, ...")."""
    s = s.strip()
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    return s


def _remove_spaces(s: str) -> str:
    r"""Remove whitespace, except one space between a LaTeX command and a letter (``\pi r``)."""

    def keep(m: re.Match[str]) -> str:
        command, following = m.group(1), m.group(2)
        if command is None:
            return ""
        return command + " " if following.isalpha() else command

    return _SPACES.sub(keep, s)


def normalize_answer(s: str) -> str:
    r"""A canonical string for fast equality checks (Hendrycks-style, extended).

    Removes: enclosing ``$``/``\(\)``/``\boxed{}``, ``\left``/``\right``, spacing commands, ``\$``,
    ``\%``/``%``, degrees (``^\circ``, ``^{\circ}``, ``°``), units (``\text{ cm}``, ``\text{ cm}^2``,
    "5 feet"), a single-variable prefix (``x = 3`` -> ``3``), thousands separators (``1,000``,
    ``10{,}000``, ``10,\!000``; a bare ``d,ddd`` only when it is the whole answer, never inside tuples
    or sets), a trailing period, whitespace. Rewrites ``\dfrac``/``\tfrac`` -> ``\frac``, ``\frac12`` ->
    ``\frac{1}{2}``, ``\sqrt2`` -> ``\sqrt{2}``, ``1/2`` -> ``\frac{1}{2}``, ``.5`` -> ``0.5``,
    ``2.50`` -> ``2.5``, ``(C)`` -> ``C``, ``bmatrix`` -> ``pmatrix``, ``\text{...}`` -> its content,
    "and"/"or" between list items -> ``,``; list commas read ``", "`` (so ``45^\circ,135^\circ`` stays
    the list ``45, 135`` and never becomes ``45135``). The result is a fixed point of this function.

    Known ambiguity: a bare ``70,110`` is read as the number 70110, although a list of two solutions is
    written the same way (a list written ``70, 110`` with a space stays a list).
    """
    s = _strip_math_delimiters(_strip_sentence_period(s))
    if _BOX_OPENER.match(s):
        box = _box_at(s, _BOX_OPENER.match(s).end())  # type: ignore[union-attr]
        if box is not None and not s[box[1] :].strip():
            s = _strip_math_delimiters(box[0])
    # A LaTeX line break "\\" (matrix rows) must not be read as a backslash starting "\ " or "\!":
    # park it as a placeholder character while backslash commands are rewritten.
    s = s.replace(_ROW_BREAK, "").replace("\\\\", _ROW_BREAK)
    s = s.replace("\r", " ").replace("\n", " ")
    s = _EXPLICIT_THOUSANDS.sub("", s)
    s = s.replace("\\!", "")
    s = _SPACING.sub(" ", s)
    s = _SIZING.sub("", s)
    s = _PHANTOM.sub("", s)  # invisible alignment material: "\phantom -1" is 1
    for old, new in (("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\cfrac", "\\frac"),
                     ("\\dbinom", "\\binom"), ("\\tbinom", "\\binom"), ("\\displaystyle", ""),
                     ("bmatrix", "pmatrix"), ("\\leq", "\\le"), ("\\geq", "\\ge"), ("\\neq", "\\ne")):
        s = s.replace(old, new)
    s = _DEGREES.sub("", s)
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = _CONNECTOR_TEXT.sub(",", s)
    s = _strip_trailing_text_units(s)
    for _ in range(3):  # \text{\textbf{x}} nests rarely and shallowly
        s = _TEXT_GROUP.sub(lambda m: m.group(1), s)
    s = _CONNECTOR_WORD.sub(",", s)
    s = _REPEATED_COMMAS.sub(",", s).strip().strip(",").strip()
    s = _strip_sentence_period(_LEADING_APPROX.sub("", s))
    s = _strip_trailing_plain_units(s)
    mc = _MULTIPLE_CHOICE.fullmatch(s)
    if mc:
        s = mc.group(1)
    if _PLAIN_THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    s = _remove_spaces(s)
    prefix = _VARIABLE_PREFIX.fullmatch(s)
    if prefix:
        s = prefix.group("rhs")
    s = _SQRT_TOKEN.sub(r"\\sqrt{\1}", s)
    s = _FRAC_TWO_TOKENS.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_BRACED_TOKEN.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_TOKEN_BRACED.sub(r"\\frac{\1}{", s)
    slash = _SLASH_FRACTION.fullmatch(s)
    if slash:
        s = f"{slash.group(1)}\\frac{{{slash.group(2)}}}{{{slash.group(3)}}}"
    s = _BARE_DECIMAL_POINT.sub("0.", s)
    if _DECIMAL.fullmatch(s):
        s = s.rstrip("0").rstrip(".")
    s = _strip_sentence_period(s)
    s = _REPEATED_COMMAS.sub(",", s).strip(",")
    # List commas read ", " so that the normal form stays a list: math-verify (and a second
    # normalisation) would read "45,135" as the number 45135.
    s = _COMMA.sub(", ", s)
    return s.replace(_ROW_BREAK, "\\\\")
