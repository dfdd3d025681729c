"""The statistics every reported figure carries: its standard error, its chance level, and whether it is
distinguishable from chance. Pure functions of counts.

A proportion p measured on n problems has standard error sqrt(p (1 - p) / n). A figure is *noise* when it
lies within two standard errors of the chance level, taking the larger of the two errors (the measured
figure's and a chance-level figure's on the same n): a result there looks like an effect but is not one.
"""

from __future__ import annotations

import math


def standard_error(p: float, n: int) -> float:
    """Standard error of a proportion p over n independent problems (nan for n = 0)."""
    if n <= 0:
        return math.nan
    return math.sqrt(max(p * (1 - p), 0.0) / n)


def chance_of_any(chance: float, n: int) -> float:
    """Chance that at least one of n independent guesses is right (pass@n of a guesser)."""
    return 1 - (1 - chance) ** n


def is_noise(value: float, chance: float | None, n: int) -> bool:
    """Whether `value` (a proportion over n problems) is within two standard errors of `chance`. False where
    no chance level is known."""
    if chance is None or n <= 0:
        return False
    se = max(standard_error(value, n), standard_error(chance, n))
    return abs(value - chance) <= 2 * se


NOISE_MARK = "†"
NOISE_NOTE = f"{NOISE_MARK} within two standard errors of the chance level: noise, not an effect."


def percent(value: float, n: int, chance: float | None = None) -> str:
    """``"12.5% ± 3.3"`` (standard error in points), marked when it is noise against `chance`."""
    if n <= 0 or value != value:
        return "-"
    text = f"{100 * value:.1f}% ± {100 * standard_error(value, n):.1f}"
    return text + NOISE_MARK if is_noise(value, chance, n) else text
