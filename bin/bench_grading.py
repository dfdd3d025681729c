#!/usr/bin/env python
"""Benchmark e2h.grading: answers/s on the fast path and through math-verify, and the helper's costs.

Prints:
- the first call that needs math-verify (starts the helper process) and a steady-state call;
- the per-request cost of the helper round trip (IPC + JSON), against math-verify run in this process;
- answers/s of ``is_equivalent`` on MATH500 gold vs the answer extracted from its gold solution (string
  equal), on the answers written as ``$answer$.`` (equal after normalisation: the fast path), on
  rewritten equivalent forms (``\\frac{2n}{2}`` for an integer n, a decimal for a fraction, a reversed
  list) and on non-equivalent pairs (each answer against the next problem's);
- how many train.jsonl answers extracted from the gold solutions grade as equivalent to ``answer``.

Data: ``--data`` (default ``$E2H_SHARED_DATA`` or ``../shared/data`` beside the checkout).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2h.data.files import read_jsonl  # noqa: E402
from e2h.grading import (  # noqa: E402
    extract_answer,
    is_equivalent,
    normalize_answer,
    workers,  # noqa: E402
)

DEFAULT_DATA = Path(os.environ.get("E2H_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def rewrite_equivalent(answer: str) -> str | None:
    """An equivalent form of ``answer`` that the normalised-string fast path does not match, or None."""
    a = answer.strip()
    if re.fullmatch(r"-?\d+", a):
        return f"\\frac{{{2 * int(a)}}}{{2}}"
    m = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", a)
    if m:
        value = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1)
        return f"{float(value):.10f}"
    # A bare list of solutions ("1, 2"), not a thousands-separated number ("58,500").
    if "," in a and not re.search(r"[()\[\]\\{}]", a) and not re.fullmatch(r"\d{1,3}(,\d{3})+", a):
        items = [item.strip() for item in a.split(",")]
        if len(set(items)) > 1:
            return ", ".join(reversed(items))
    return None


def rate(pairs: list[tuple[str | None, str]], timeout: float) -> tuple[float, int, float]:
    """(answers/s, number graded equivalent, seconds) for is_equivalent(pred, gold) over pairs."""
    start = time.perf_counter()
    hits = sum(is_equivalent(pred, gold, timeout=timeout) for pred, gold in pairs)
    seconds = time.perf_counter() - start
    return len(pairs) / seconds, hits, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder holding math/test.jsonl and math/train.jsonl"
    )
    parser.add_argument("--timeout", type=float, default=workers.VERIFY_TIMEOUT_S, help="seconds per math-verify call")
    parser.add_argument("--skip-train", action="store_true", help="skip the 12,000-answer train.jsonl check")
    args = parser.parse_args()

    test_path = args.data / "math" / "test.jsonl"
    if not test_path.is_file():
        print(f"missing {test_path} (set --data or E2H_SHARED_DATA)", file=sys.stderr)
        return 2
    rows = [row for _, row in read_jsonl(test_path)]

    # Helper start: the first call that needs math-verify in this process.
    start = time.perf_counter()
    assert is_equivalent("0.5", r"\frac{1}{2}", timeout=args.timeout)
    first = time.perf_counter() - start
    start = time.perf_counter()
    assert is_equivalent("0.25", r"\frac{1}{4}", timeout=args.timeout)
    second = time.perf_counter() - start
    print(f"first call needing math-verify (helper start): {first * 1e3:.0f} ms; next such call: {second * 1e3:.1f} ms")

    # Round-trip overhead: the same trivial comparison through the helper and in this process.
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its "timeouts disabled" warning: on purpose

    n = 300
    start = time.perf_counter()
    for _ in range(n):
        workers._verify_with_helper(["7"], ["7"], args.timeout)
    helper_ms = (time.perf_counter() - start) / n * 1e3
    parse("$7$", parsing_timeout=None)
    start = time.perf_counter()
    for _ in range(n):
        verify(parse("$7$", parsing_timeout=None), parse("$7$", parsing_timeout=None), timeout_seconds=None)
    local_ms = (time.perf_counter() - start) / n * 1e3
    print(
        f"trivial math-verify request: {helper_ms:.2f} ms through the helper, {local_ms:.2f} ms in process "
        f"(round-trip overhead {helper_ms - local_ms:.2f} ms)"
    )

    golds = [row["answer"] for row in rows]
    extracted = [extract_answer(row["solution"]) for row in rows]
    per_s, hits, _ = rate(list(zip(extracted, golds)), args.timeout)
    fast = sum(e is not None and normalize_answer(e) == normalize_answer(g) for e, g in zip(extracted, golds))
    print(f"MATH500 gold vs extracted: {hits}/{len(rows)} equivalent, {per_s:,.0f} answers/s ({fast} normalise equal)")

    # Same answers dressed as a model might write them: "$...$." around them. Not string-equal, but
    # equal after normalisation: the normalised fast path, without math-verify.
    dressed = [(f"${g}$.", g) for g in golds]
    per_s, hits, _ = rate(dressed, args.timeout)
    fast = sum(normalize_answer(p) == normalize_answer(g) for p, g in dressed)
    print(
        f"MATH500 '$answer$.' vs answer: {hits}/{len(rows)} equivalent, {per_s:,.0f} answers/s "
        f"({fast} on the fast path)"
    )

    rewritten = [(rewrite_equivalent(g), g) for g in golds]
    rewritten = [(p, g) for p, g in rewritten if p is not None]
    per_s, hits, _ = rate(rewritten, args.timeout)
    print(f"MATH500 rewritten equivalents (math-verify): {hits}/{len(rewritten)} equivalent, {per_s:,.0f} answers/s")
    misses = [(p, g) for p, g in rewritten if not is_equivalent(p, g, timeout=args.timeout)]
    for p, g in misses[:10]:
        print(f"    missed: gold {g!r} vs {p!r}")

    shifted = [(golds[(i + 1) % len(golds)], golds[i]) for i in range(len(golds))]
    shifted = [(p, g) for p, g in shifted if normalize_answer(p) != normalize_answer(g)]
    per_s, hits, _ = rate(shifted, args.timeout)
    print(
        f"MATH500 non-equivalent pairs (math-verify): {hits}/{len(shifted)} graded equivalent, "
        f"{per_s:,.0f} answers/s"
    )
    for i in range(len(shifted)):
        if is_equivalent(*shifted[i], timeout=args.timeout):
            print(f"    false positive: gold {shifted[i][1]!r} vs {shifted[i][0]!r}")

    pool = workers._pool_for_this_process()
    print(f"helpers started: {pool.started}, timeouts: {pool.timeouts}")

    if not args.skip_train:
        train_path = args.data / "math" / "train.jsonl"
        if train_path.is_file():
            train = [row for _, row in read_jsonl(train_path)]
            start = time.perf_counter()
            ok = 0
            failures = []
            for row in train:
                if is_equivalent(extract_answer(row["solution"]), row["answer"], timeout=args.timeout):
                    ok += 1
                else:
                    failures.append(row["unique_id"])
            seconds = time.perf_counter() - start
            print(
                f"train.jsonl gold vs extracted: {ok}/{len(train)} equivalent in {seconds:.2f} s "
                f"({len(train) / seconds:,.0f} answers/s, extraction included); not equivalent: {failures[:10]}"
            )
        else:
            print(f"train.jsonl absent at {train_path}; skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
