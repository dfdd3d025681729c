"""Does the generation budget leave room for the solutions a model must write?

A completion cut by ``max_new_tokens`` has no final answer, or a wrong short one that may match the gold by
luck. When the budget is shorter than the reference solutions of a level, that level's accuracy measures luck,
not skill, and nothing else in the figures says so. This check compares the budget with the token lengths of
the reference solutions (response + EOS) of each level before any generation starts:

- below the median length of a level: most correct solutions cannot be written at all, so it raises (or
  warns, when the user asked for ``budget_check: warn``, e.g. a pipeline check on a random model);
- below the longest one: some cannot, so it returns a warning for the caller to print.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from e2h.data.errors import UserError


BUDGET_CHECKS = ("error", "warn", "off")


class BudgetTooShort(UserError, ValueError):
    """max_new_tokens is below the median reference solution of at least one level."""


def _level_name(level: int | None) -> str:
    return "no level" if level is None else f"level {level}"


def check_generation_budget(
    lengths_by_level: Mapping[int | None, Sequence[int]], max_new_tokens: int, what: str, mode: str = "error"
) -> str | None:
    """Raise `BudgetTooShort` when `max_new_tokens` is shorter than the median reference solution of a level;
    return a warning when it is shorter than the longest one; None when every reference fits.

    `lengths_by_level` maps a level to the token lengths (EOS included) of its reference solutions; `what`
    names the setting and the data in the messages (e.g. ``"model.init_args.max_new_tokens for the test
    split"``). `mode` is one of `BUDGET_CHECKS`: ``warn`` returns the message where ``error`` raises, ``off``
    checks nothing.
    """
    if mode not in BUDGET_CHECKS:
        raise ValueError(f"budget_check must be one of {BUDGET_CHECKS}, got {mode!r}")
    if mode == "off":
        return None
    rows, fatal = [], False
    for level in sorted(lengths_by_level, key=lambda lv: (lv is None, lv or 0)):
        lengths = list(lengths_by_level[level])
        if not lengths:
            continue
        cut = sum(n > max_new_tokens for n in lengths)
        if cut:
            median = statistics.median(lengths)
            fatal |= max_new_tokens < median
            rows.append(
                f"  {_level_name(level)}: {cut} of {len(lengths)} reference solutions ({cut / len(lengths):.0%}) "
                f"are longer (median {median:.0f}, longest {max(lengths)} tokens)"
            )
    if not rows:
        return None
    longest = max(max(v) for v in lengths_by_level.values() if len(v))
    message = (
        f"{what} = {max_new_tokens} tokens is too short for the reference solutions:\n" + "\n".join(rows) + "\n"
        f"Completions that need more are cut before their answer, and a cut solution that is graded correct is "
        f"luck. Set it to at least {longest} (the longest reference solution, EOS included)."
    )
    if fatal and mode == "error":
        raise BudgetTooShort(message + " (budget_check: warn turns this error into a warning)")
    return message
