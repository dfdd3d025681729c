"""Whether a predicted final answer equals the reference: exact or normalised string equality first, then
math-verify in a bounded helper process (see the package docstring for the time bound)."""

from __future__ import annotations

import re

from e2h.grading.extraction import _ANSWER_HEADING, _BOX_OPENER, _box_at, _THINK_CLOSE, _strip_math_delimiters, extract_answer
from e2h.grading.normalization import _TEXT_MACRO, normalize_answer
from e2h.grading.screening import MAX_ANSWER_CHARS, refusal_reason
from e2h.grading.workers import VERIFY_TIMEOUT_S, _verify_with_helper, check_timeout


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


def has_stray_math_delimiters(s: str) -> bool:
    r"""Whether ``s`` holds a ``$`` that does not pair up around some content (``$5$`` and ``$$5$$`` pair up;
    ``$$$$5``, ``5$`` and ``"$" * 999 + "5"`` do not; an escaped ``\$`` is text). Such an answer is malformed
    and never equivalent: normalisation would strip the dollars and let any junk around a right number pass."""
    rest = re.sub(r"\\\$", "", s)
    rest = re.sub(r"\$\$[^$]+\$\$|\$[^$]+\$", "", rest)
    return "$" in rest


_MATH_SPAN = re.compile(r"(?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$.+?(?<!\\)\$|\\\(.+?\\\)|\\\[.+?\\\]", re.DOTALL)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")


def looks_like_completion(s: str) -> bool:
    r"""Whether ``s`` is a whole solution rather than a bare answer: it has a ``# Answer`` heading, a
    ``</think>``, a box with something around it (``x = \boxed{5}.``), or math spans with words
    outside them ("Therefore $x \geq 5$ is the solution."). A bare answer, even one in ``$...$`` or with a
    unit word ("5 dollars", "$\boxed{5}$"), is not."""
    if _THINK_CLOSE in s or _ANSWER_HEADING.search(s):
        return True
    inner = _strip_math_delimiters(s)
    box = _BOX_OPENER.search(inner)
    if box is not None:
        whole = _box_at(inner, box.end())
        return box.start() > 0 or whole is None or bool(inner[whole[1] :].strip())
    spans = list(_MATH_SPAN.finditer(inner))
    if not spans:
        return False
    outside = _MATH_SPAN.sub(" ", inner)
    return bool(_WORD.search(outside))


def is_equivalent(pred: str | None, gold: str, *, timeout: float = VERIFY_TIMEOUT_S) -> bool:
    """Whether the predicted final answer equals the reference answer ``gold`` (`equivalence_verdict`, with an
    undecided verdict counted as not equivalent)."""
    return equivalence_verdict(pred, gold, timeout=timeout) is True


def equivalence_verdict(pred: str | None, gold: str, *, timeout: float = VERIFY_TIMEOUT_S) -> bool | None:
    """Whether the predicted final answer equals the reference answer ``gold``: True, False, or None when
    math-verify could not decide within its CPU budget (callers count those apart).

    ``None`` or blank ``pred`` (no answer) is never equivalent, nor is a blank ``gold``. Exact and
    :func:`normalize_answer` matches return at once. A whole solution given as ``pred`` or ``gold``
    (`looks_like_completion`) is graded by its final answer (:func:`extract_answer`, free text included).
    Otherwise math-verify decides (``verify(gold, pred)`` on both the raw and the normalised forms, each
    wrapped in ``$...$`` so a bare ``\\dfrac{9}{7}`` parses) in a helper process, within ``timeout`` CPU seconds (load on the machine does not change a
    verdict); running out is undecided (None). Inputs refused by :func:`refusal_reason` never reach
    math-verify; a prediction with stray ``$`` (`has_stray_math_delimiters`) is malformed, never equivalent.
    """
    return _verdict(pred, gold, timeout, read_completions=True)


def _verdict(pred: str | None, gold: str, timeout: float, *, read_completions: bool) -> bool | None:
    """`equivalence_verdict`; ``read_completions`` False once a completion's answer has been extracted."""
    check_timeout(timeout)
    if pred is None:
        return False
    pred_s, gold_s = pred.strip(), gold.strip()
    if not pred_s or not gold_s:
        return False
    if pred_s == gold_s:
        return True
    # A whole solution passed as an answer: grade its final answer (extract_answer's precedence).
    if read_completions:
        # When nothing can be extracted (an unclosed box), the text is compared as given, as before.
        pred_answer, gold_answer = (
            (extract_answer(s, timeout=timeout) if looks_like_completion(s) else None) or s for s in (pred_s, gold_s)
        )
        if (pred_answer, gold_answer) != (pred_s, gold_s):
            return _verdict(pred_answer, gold_answer, timeout, read_completions=False)
    if has_stray_math_delimiters(pred_s):
        return False
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
