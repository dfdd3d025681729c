"""The math-verify helper process behind ``e2h.grading.is_equivalent`` (started by `e2h.grading.workers`; not a
public API).

Protocol, one JSON object per line: after importing math-verify the helper writes ``{"ready": true}``;
then for each request ``{"id", "golds", "preds", "budget_s"}`` on stdin it writes ``{"id",
"equivalent"}`` (or ``{"id", "error"}``) on stdout. It exits when stdin closes.

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


def _verify_pairs(golds: list[str], preds: list[str]) -> bool:
    """True when math-verify accepts any (gold, pred) pair, each side wrapped as inline math."""
    from math_verify import parse, verify

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
    _send(out, {"ready": True, "pid": os.getpid()})

    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            request_id = request["id"]
            golds, preds = [str(g) for g in request["golds"]], [str(p) for p in request["preds"]]
            budget_s = float(request.get("budget_s", 5.0))
        except (ValueError, KeyError, TypeError) as e:
            _send(out, {"id": None, "error": f"bad request: {e}"})
            continue
        _limit_cpu(budget_s)
        try:
            equivalent = _verify_pairs(golds, preds)
        except Exception as e:  # math-verify catches its own errors; this is a last resort
            _send(out, {"id": request_id, "error": f"{type(e).__name__}: {e}"[:500]})
        else:
            _send(out, {"id": request_id, "equivalent": equivalent})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
