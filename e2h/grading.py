r"""Final-answer extraction and equivalence grading for MATH-style answers.

Two public entry points and the normaliser they share:

- :func:`extract_answer` finds the model's final answer in a solution: the ``# Answer`` section of the
  paper's format, else the last ``\boxed{...}`` / ``\fbox{...}`` (MATH's own style).
- :func:`is_equivalent` decides whether a predicted answer equals the reference. A fast path compares
  :func:`normalize_answer` forms (Hendrycks-style normalisation: units, ``\text{}``, degrees, percent,
  ``x =`` prefixes, thousands separators, ``\dfrac``, ``\frac12``, ``.5``...); only when that fails is
  math-verify asked (sets in any order, ``0.5`` vs ``\frac12``, intervals, matrices, mixed numbers...).

Never hangs. math-verify's own timeouts use ``signal.alarm``, which fails outside the main thread, and
with them off some inputs never return: comparing ``10^{10^{10^{10^{10}}}}`` with ``1`` runs big-integer
arithmetic that holds the GIL, so no thread-based timeout can stop it. Two defences, in this order:

1. *Screening* (:func:`refusal_reason`): answers longer than :data:`MAX_ANSWER_CHARS`, nested deeper than
   :data:`MAX_NESTING_DEPTH`, with power towers, huge literal exponents or factorials of huge numbers are
   never given to sympy; they are compared as normalised strings only.
2. *A helper process*: math-verify runs in a persistent child process (``e2h/_verify_worker.py``) spoken
   to in JSON lines. The caller enforces a deadline (``timeout``, default :data:`VERIFY_TIMEOUT_S`
   seconds per call); on expiry it kills the child, answers "not equivalent" and starts a fresh child on
   the next call. The child is started with ``subprocess.Popen`` (not ``multiprocessing``), so this also
   works inside daemonic DataLoader workers; a forked process (a DataLoader worker) never reuses its
   parent's children; threads share a small pool of children (:data:`MAX_VERIFY_WORKERS`).

The time bound: a call that reaches math-verify returns within ``timeout`` seconds of handing its request
to a ready helper. Starting a helper (first call in a process, or the first after a timeout) is bounded
separately by :data:`WORKER_START_TIMEOUT_S` (it normally takes well under a second). Threads queue for a
helper when all :data:`MAX_VERIFY_WORKERS` are busy; each holder releases within its own bound.
The helper machinery is POSIX (Linux, macOS): it uses ``poll`` on pipes and process sessions.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Bounds (documented module constants; see the module docstring for how they combine)
# --------------------------------------------------------------------------------------------------

#: Default seconds one math-verify comparison may take before it counts as "not equivalent".
VERIFY_TIMEOUT_S: float = 5.0
#: Seconds a helper process may take to import math-verify and report ready.
WORKER_START_TIMEOUT_S: float = 60.0
#: Most helper processes one process keeps (threads beyond this queue for a free one).
MAX_VERIFY_WORKERS: int = 4
#: Address-space cap of a helper process; a runaway sympy computation fails with MemoryError there
#: instead of swapping the trainer's machine. math-verify itself needs ~100 MB.
WORKER_MEMORY_LIMIT_BYTES: int = 2 * 1024**3
#: Longer answers are compared as strings only (MATH's longest reference answer has 159 characters).
MAX_ANSWER_CHARS: int = 1000
#: Deeper bracket nesting is compared as strings only (MATH's deepest reference answer nests 3 levels).
MAX_NESTING_DEPTH: int = 20
#: A literal exponent with this many digits or more is refused (2^{99999999} already costs ~0.5 s).
MAX_EXPONENT_DIGITS: int = 8
#: A literal factorial argument with this many digits or more is refused (999999! costs ~5 s).
MAX_FACTORIAL_DIGITS: int = 6

# Text that ends a generation: tokenizer end markers some decoders leave in the text.
_EOS_MARKERS = ("</s>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<eos>")

# --------------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------------

_BOX_OPENER = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_ANSWER_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]*answer\b[ \t]*:?", re.IGNORECASE | re.MULTILINE)
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


# --------------------------------------------------------------------------------------------------
# Normalisation (the fast path)
# --------------------------------------------------------------------------------------------------

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
_DIGITS = re.compile(r"\d+")
_TRAILING_DIGITS = re.compile(r"\d+$")


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


# --------------------------------------------------------------------------------------------------
# Screening: inputs sympy must never see
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# The math-verify helper process
# --------------------------------------------------------------------------------------------------

_WORKER_FILE = Path(__file__).with_name("_verify_worker.py")
# Run the worker file as __main__ without putting e2h/ on sys.path (e2h/io.py would shadow the standard
# library's io) and without importing the e2h package (whose __init__ may pull in torch).
_BOOTSTRAP = (
    "import runpy, sys\n"
    "if sys.path and sys.path[0] == '': sys.path.pop(0)  # the working directory (absent under -P)\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


class WorkerError(RuntimeError):
    """The math-verify helper process could not be started."""


class _Worker:
    """One math-verify helper process, spoken to in JSON lines over its stdin/stdout."""

    def __init__(self, start_timeout: float) -> None:
        self._buffer = b""
        self._next_id = 0
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, str(_WORKER_FILE), str(WORKER_MEMORY_LIMIT_BYTES)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Own session: a Ctrl-C in the terminal stops the trainer, not (noisily) its helpers; a
                # helper exits by itself when its stdin closes.
                start_new_session=True,
            )
        except OSError as e:
            raise WorkerError(f"cannot start the math-verify helper ({sys.executable}): {e}") from e
        assert self.proc.stdout is not None
        # poll(), not select(): select() fails on descriptors above 1024, common in a big trainer.
        self._poller = select.poll()
        self._poller.register(self.proc.stdout.fileno(), select.POLLIN)
        try:
            ready = self._read_message(time.monotonic() + start_timeout)
        except BaseException:
            self.kill()
            raise
        if ready is None or not ready.get("ready"):
            try:
                exit_code: int | None = self.proc.wait(timeout=0.5)  # EOF: let it finish exiting
            except subprocess.TimeoutExpired:
                exit_code = None
            self.kill()
            what = f"exited with code {exit_code}" if exit_code is not None else f"not ready in {start_timeout:g} s"
            raise WorkerError(f"the math-verify helper {what}; see its stderr above")

    def _read_message(self, deadline: float) -> dict | None:
        """The next JSON line from the helper, or None on deadline, EOF or garbage."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if not self._poller.poll(max(1, math.ceil(remaining * 1000))):
                continue  # woke early or timed out: the loop re-checks the deadline
            chunk = os.read(fd, 65536)
            if not chunk:
                return None  # the helper died
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None

    def compare(self, golds: Sequence[str], preds: Sequence[str], timeout: float) -> bool | None:
        """math-verify's verdict on the pairs (golds[i], preds[i]); None when it timed out or died."""
        assert self.proc.stdin is not None
        self._next_id += 1
        request = {"id": self._next_id, "golds": list(golds), "preds": list(preds), "budget_s": timeout}
        deadline = time.monotonic() + timeout
        try:
            # Requests are capped by MAX_ANSWER_CHARS, far below a pipe buffer, and the helper has read
            # all earlier requests (it answered them), so this write cannot block.
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return None
        while True:
            reply = self._read_message(deadline)
            if reply is None:
                return None
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    logger.debug("math-verify helper error: %s", reply["error"])
                    return False
                return bool(reply.get("equivalent"))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """Stop the helper now and reap it (SIGKILL: it may be stuck in C code that ignores signals)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


class _WorkerPool:
    """Helpers shared by the threads of one process; at most ``size`` exist, started on demand."""

    def __init__(self, size: int) -> None:
        self.pid = os.getpid()
        self.size = max(1, size)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._live = 0
        self.started = 0  # helpers started so far (tests and benchmarks read these two)
        self.timeouts = 0  # requests that timed out (or whose helper died): each cost a helper

    def acquire(self, start_timeout: float) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        return worker
                    worker.kill()
                    self._live -= 1
                if self._live < self.size:
                    self._live += 1
                    break
                self._cond.wait()
        try:
            # Started outside the lock so other threads keep using their helpers meanwhile.
            worker = _Worker(start_timeout)
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify()
            raise
        with self._cond:
            self.started += 1
        return worker

    def release(self, worker: _Worker, healthy: bool) -> None:
        if not healthy:
            worker.kill()
        with self._cond:
            if healthy:
                self._idle.append(worker)
            else:
                self._live -= 1
                self.timeouts += 1
            self._cond.notify()

    def close(self) -> None:
        """Stop the idle helpers (busy ones are stopped by their callers' deadlines)."""
        with self._cond:
            idle, self._idle = self._idle, []
            self._live -= len(idle)
        for worker in idle:
            worker.kill()


_pool: _WorkerPool | None = None
_pool_lock = threading.Lock()
# Pools inherited through fork belong to the parent; keep references so their pipes are never flushed or
# closed from the child (garbage collection would do both).
_inherited_pools: list[_WorkerPool] = []


def _pool_for_this_process() -> _WorkerPool:
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            if _pool is not None:
                _inherited_pools.append(_pool)
            _pool = _WorkerPool(MAX_VERIFY_WORKERS)
        return _pool


def _forget_pool_after_fork() -> None:
    # In a forked child (e.g. a DataLoader worker) the parent's helpers are not ours, and the lock may
    # have been held by a parent thread that does not exist here: start over.
    global _pool, _pool_lock
    if _pool is not None:
        _inherited_pools.append(_pool)
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


@atexit.register
def _shutdown() -> None:
    if _pool is not None and _pool.pid == os.getpid():
        _pool.close()


def _verify_with_helper(golds: Sequence[str], preds: Sequence[str], timeout: float) -> bool:
    """math-verify on (golds[i], preds[i]) pairs in a helper, True if any pair verifies; False on timeout."""
    pool = _pool_for_this_process()
    worker = pool.acquire(WORKER_START_TIMEOUT_S)
    healthy = False
    try:
        verdict = worker.compare(golds, preds, timeout)
        healthy = verdict is not None
    finally:
        # Any exception here (KeyboardInterrupt while waiting) leaves the helper's state unknown: kill it.
        pool.release(worker, healthy)
    if verdict is None:
        logger.warning(
            "math-verify gave no answer within %.3g s (gold %.60r, prediction %.60r); counted as not "
            "equivalent, helper stopped (a fresh one starts on the next call)", timeout, golds[0], preds[0],
        )
        return False
    return verdict


# --------------------------------------------------------------------------------------------------
# Equivalence
# --------------------------------------------------------------------------------------------------


def _is_text_answer(gold: str, normalized_gold: str) -> bool:
    r"""Whether the reference is a word answer (``\text{Friday}``, ``\text{Dana, Bob}``).

    Such answers are compared as strings only: sympy reads a bare word as a product of symbols, so
    "Devon" and "Doven" would be "equal". Lists of single letters (``\text{A,C}``) stay with math-verify,
    which compares them as sets.
    """
    if not re.search(_TEXT_MACRO, gold):
        return False
    items = [item.strip() for item in normalized_gold.split(",")]
    return all(re.fullmatch(r"[A-Za-z][A-Za-z '\-]*", item) for item in items) and any(
        len(item) >= 2 for item in items
    )


def _fold_words(s: str) -> str:
    return re.sub(r"\s+", "", s).casefold()


def is_equivalent(pred: str | None, gold: str, *, timeout: float = VERIFY_TIMEOUT_S) -> bool:
    """Whether the predicted final answer equals the reference answer ``gold``.

    ``None`` or blank ``pred`` (no answer) is never equivalent, nor is a blank ``gold``. Exact and
    :func:`normalize_answer` matches return at once; otherwise math-verify decides (``verify(gold, pred)``
    on both the raw and the normalised forms, each wrapped in ``$...$`` so a bare ``\\dfrac{9}{7}``
    parses) in a helper process, within ``timeout`` seconds; a timeout counts as not equivalent.
    Inputs refused by :func:`refusal_reason` never reach math-verify.
    """
    if not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if pred is None:
        return False
    pred_s, gold_s = pred.strip(), gold.strip()
    if not pred_s or not gold_s:
        return False
    if pred_s == gold_s:
        return True
    if len(pred_s) > MAX_ANSWER_CHARS or len(gold_s) > MAX_ANSWER_CHARS:
        return False  # not equal as strings, and too long to normalise or parse safely
    norm_pred, norm_gold = normalize_answer(pred_s), normalize_answer(gold_s)
    if not norm_pred or not norm_gold:
        return False
    if norm_pred == norm_gold:
        return True
    if _is_text_answer(gold_s, norm_gold):
        return _fold_words(norm_pred) == _fold_words(norm_gold)
    forms = (gold_s, pred_s, norm_gold, norm_pred)
    if any(refusal_reason(f) for f in forms):
        return False
    golds, preds = [gold_s], [pred_s]
    if (norm_gold, norm_pred) != (gold_s, pred_s):
        golds.append(norm_gold)
        preds.append(norm_pred)
    return _verify_with_helper(golds, preds, timeout)
