"""The math-verify helper process behind ``e2h.grading.is_equivalent`` (started by `e2h.grading.workers`; not a
public API).

Protocol, one JSON object per line: after importing math-verify the helper writes ``{"ready": true}``;
then for each request ``{"id", "golds", "preds", "budget_s"}`` on stdin it writes ``{"id",
"equivalent"}``, and for each request ``{"id", "extract", "budget_s"}`` (free text) it writes ``{"id",
"answer"}`` (the text of the last mathematical expression math-verify extracts, or null); on failure
``{"id", "error"}``. It exits when stdin closes.

Numbers are compared more strictly than math-verify does on its own (`_strict_numeric_eq`, patched into
math-verify's grader): two exact values (integers, fractions, radicals, pi...) are equal only when they
are exactly equal (math-verify's ``evalf(chop=True)`` calls ``1/3^80`` and ``1/3^81`` equal); a decimal
against anything must agree to math-verify's 6 decimal places *and* to 3 significant digits (relative
difference at most `FLOAT_RELATIVE_TOLERANCE`), so ``1e-10`` and ``2e-10`` differ while ``0.333333`` still
equals ``1/3``.

The caller enforces the time bound by killing this process. Two limits of its own keep it from harming
the machine when nobody is left to kill it (the trainer died mid-request): an address-space cap (argv[1],
bytes) and, per request, a CPU-time limit a little above the caller's budget, after which the kernel
ends the process with SIGXCPU even inside C code that holds the GIL.

This file imports only the standard library and math-verify: it runs as a script, without the e2h
package, so that starting it stays cheap.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, BinaryIO

try:
    import resource
except ImportError:  # not POSIX: no self-imposed limits, the caller's kill still bounds each call
    resource = None  # type: ignore[assignment]

# CPU seconds allowed beyond a request's budget before the kernel stops the helper; the caller normally
# kills it first (its deadline is wall time, which is never shorter than CPU time).
_CPU_GRACE_S = 1  # + the rounding up to whole seconds: the budget is what the caller asked, within ~2 s


def _limit_memory(limit_bytes: int) -> None:
    if resource is None or limit_bytes <= 0:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))


def _limit_cpu(budget_s: float) -> None:
    if resource is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime + max(budget_s, 0.0)) + _CPU_GRACE_S
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


#: Relative difference allowed between a decimal and the value it stands for (3 significant digits).
FLOAT_RELATIVE_TOLERANCE = 5e-3
#: Digits used to compare two exact values that sympy cannot decide symbolically; and the relative gap
#: below which they count as equal (far below any difference a MATH answer can have).
_EXACT_DIGITS = 60
_EXACT_RELATIVE_GAP = 1e-40
#: Beyond this many digits before the point, exact values are compared by sympy's simplify instead.
_MAX_MAGNITUDE_DIGITS = 2000


def _number_value(expr: Any) -> Any:
    """``expr`` evaluated to a sympy number when it is a closed-form scalar (no symbols, sets, matrices), else None."""
    import sympy

    if not isinstance(expr, sympy.Expr) or expr.free_symbols:
        return None
    try:
        value = expr.doit()
    except Exception:
        return None
    return value if isinstance(value, sympy.Expr) and not value.free_symbols else None


def _strict_numeric_eq(original: Any) -> Any:
    """math-verify's ``sympy_numeric_eq`` with exact comparison of exact values and a relative check of decimals."""
    import sympy

    def numeric_eq(a: Any, b: Any, float_rounding: int, numeric_precision: int) -> bool:
        va, vb = _number_value(a), _number_value(b)
        if va is None or vb is None or va.is_finite is not True or vb.is_finite is not True:
            return original(a, b, float_rounding, numeric_precision)  # symbols, sets, infinities...
        try:
            inexact = va.has(sympy.Float) or vb.has(sympy.Float)
            if not inexact:
                if va.is_Rational and vb.is_Rational:
                    return bool(va == vb)
                # Precision relative to size: equal exact values agree to ~60 digits, distinct ones never do.
                # Sympy numbers throughout: a Python float would overflow to inf for 2^{9999999}.
                size = sympy.Max(sympy.Abs(sympy.N(va, 15)), sympy.Abs(sympy.N(vb, 15)))
                if size == 0:
                    return True
                # Digits enough to see a difference of 1 in numbers of this size (2^{100}+1 vs 2^{100}).
                magnitude = max(0, int(sympy.log(size, 10).evalf(15)))
                if magnitude > _MAX_MAGNITUDE_DIGITS:
                    return bool(sympy.simplify(va - vb) == 0)
                digits = _EXACT_DIGITS + magnitude
                gap = sympy.Abs(sympy.N(va - vb, digits))
                return bool(gap == 0 or gap <= _EXACT_RELATIVE_GAP * size)
            if not original(a, b, float_rounding, numeric_precision):
                return False
            gap = sympy.Abs(sympy.N(va - vb, 30))
            size = sympy.Max(sympy.Abs(sympy.N(va, 30)), sympy.Abs(sympy.N(vb, 30)))
            return bool(gap <= FLOAT_RELATIVE_TOLERANCE * size)
        except Exception:
            return original(a, b, float_rounding, numeric_precision)

    return numeric_eq


_patched = False


def _patch_math_verify() -> None:
    """Install `_strict_numeric_eq` in math-verify's grader (this process only)."""
    global _patched
    if _patched:
        return
    import math_verify.grader as grader

    grader.sympy_numeric_eq = _strict_numeric_eq(grader.sympy_numeric_eq)
    _patched = True


def _extract_free_text(text: str) -> str | None:
    """The last mathematical expression in free text, as math-verify extracts it (LaTeX first, then plain
    expressions; "final answer is" / "answer:" anchors win over the last plain one); None when none parses."""
    import math_verify.parser as parser

    found: list[str] = []
    original = parser.extract_match

    def recording_extract_match(match: Any, target_type: Any) -> Any:
        parsed, as_text = original(match, target_type)
        if parsed is not None:
            found.append(as_text)
        return parsed, as_text

    parser.extract_match = recording_extract_match
    try:
        extracted = parser.parse(
            text,
            [parser.LatexExtractionConfig(), parser.ExprExtractionConfig()],
            fallback_mode="no_fallback",
            parsing_timeout=None,
        )
    finally:
        parser.extract_match = original
    if not extracted or not found:
        return None
    answer = found[-1].strip()  # parse stops at the first match that parses: the last one recorded
    return answer or None


def _verify_pairs(golds: list[str], preds: list[str]) -> bool:
    """True when math-verify accepts any (gold, pred) pair, each side wrapped as inline math."""
    from math_verify import parse, verify

    _patch_math_verify()
    for gold, pred in zip(golds, preds, strict=True):
        # Wrapped in $...$: a bare gold such as \dfrac{9}{7} parses to nothing otherwise. Timeouts off:
        # they use signal.alarm, and the bound is the caller's kill.
        parsed_gold = parse(f"${gold}$", parsing_timeout=None)
        parsed_pred = parse(f"${pred}$", parsing_timeout=None)
        if parsed_gold and parsed_pred and verify(parsed_gold, parsed_pred, timeout_seconds=None):
            return True
    return False


def _send(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def main(argv: list[str]) -> int:
    # The protocol owns the original stdout; anything else that prints (a library's stray print) goes to
    # stderr so it cannot corrupt a reply.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    _limit_memory(int(argv[1]) if len(argv) > 1 else 0)

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled" warnings: on purpose
    _verify_pairs(["1"], ["1"])  # import sympy and build the parsers now, not inside a timed request
    _extract_free_text("so $x = 1$")
    _send(out, {"ready": True, "pid": os.getpid()})

    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            request_id = request["id"]
            budget_s = float(request.get("budget_s", 5.0))
            if "extract" in request:
                text = str(request["extract"])
            else:
                golds, preds = [str(g) for g in request["golds"]], [str(p) for p in request["preds"]]
        except (ValueError, KeyError, TypeError) as e:
            _send(out, {"id": None, "error": f"bad request: {e}"})
            continue
        _limit_cpu(budget_s)
        try:
            if "extract" in request:
                reply: dict[str, Any] = {"id": request_id, "answer": _extract_free_text(text)}
            else:
                reply = {"id": request_id, "equivalent": _verify_pairs(golds, preds)}
        except Exception as e:  # math-verify catches its own errors; this is a last resort
            _send(out, {"id": request_id, "error": f"{type(e).__name__}: {e}"[:500]})
        else:
            _send(out, reply)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
