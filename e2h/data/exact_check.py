"""The generated benchmarks whose every step e2h can check exactly, found from a record's id.

Two benchmarks are generated in memory: `e2h.data.synthetic` (ids ``synthetic/...``) and `e2h.data.chains`
(ids ``chains/...``). Each module offers the same checker functions, so evaluation, labelling and reports
ask `checker_for(problem_id)` and treat both alike; problems of other data (MATH) have no checker.
"""

from __future__ import annotations

from types import ModuleType

from e2h.data import chains, synthetic

BENCHMARKS: tuple[ModuleType, ...] = (synthetic, chains)
"""Each has SOURCE, ANSWER_CHANCE, STEP_ERRORS, solves, step_errors, label_steps, final_answer and is_filler."""


def checker_for(unique_id: object) -> ModuleType | None:
    """The benchmark module whose exact checker judges a problem with this id, or None."""
    if not isinstance(unique_id, str):
        return None
    prefix, slash, _ = unique_id.partition("/")
    return next((b for b in BENCHMARKS if slash and b.SOURCE == prefix), None)
