"""Few-shot prompts: solved exemplars drawn once from chosen levels, in front of every question (the paper's
Full / Hard / Easy-to-Hard ICL)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from e2h.data.errors import DataError
from e2h.data.prompts import EXEMPLAR_SEPARATOR, PromptFormat
from e2h.data.records import Problem, exclude_held_out, level_counts


def draw_exemplars(
    pool: Sequence[Problem],
    k: int,
    levels: Iterable[int] | None = None,
    seed: int = 0,
    exclude: Iterable[Problem] = (),
) -> list[Problem]:
    """Draw k exemplars from `pool`, restricted to `levels`, never one of `exclude` (by id or text).

    The draw is fixed by `seed`: the same exemplars serve every evaluated problem, as in the paper's
    Full / Hard / Easy-to-Hard ICL comparisons (exemplars from levels 1-5 / 4-5 / 1-3).
    """
    wanted = None if levels is None else set(levels)
    candidates = exclude_held_out([p for p in pool if wanted is None or p.level in wanted], exclude)
    if len(candidates) < k:
        raise DataError(
            f"few-shot: need {k} exemplars from levels {sorted(wanted) if wanted else 'any'}, "
            f"the pool has {len(candidates)} (pool levels: {level_counts(pool)})"
        )
    return random.Random(seed).sample(candidates, k)


@dataclass(frozen=True)
class FewShotPrompt:
    """A prompt with solved exemplars in front of the question."""

    exemplars: tuple[Problem, ...]
    fmt: PromptFormat = PromptFormat()

    @property
    def prefix(self) -> str:
        return "".join(self.fmt.prompt(e.problem) + self.fmt.response(e) + EXEMPLAR_SEPARATOR for e in self.exemplars)

    def __call__(self, problem: str) -> str:
        return self.prefix + self.fmt.prompt(problem)
