"""How well a reward model's step scores separate right steps from wrong ones on a generator's own samples,
by level and by kind of error, with exact labels from a generated benchmark's checker (`e2h.data.exact_check`).

Labels follow the PRM800K convention the reward models are trained with: every step up to and including the
first wrong one is labelled (1 right, 0 wrong), the steps after it are not. A scored samples file
(`e2h predict` with a reward model) gives each sample's ``steps`` and ``step_scores``; the question is read
back from the prompt. The AUROC of a level is over all its labelled steps; the AUROC of an error kind
compares the wrong steps of that kind with all right steps. Levels or kinds with only one class get None.

Beside each level's AUROC stands the AUROC of the step's position alone (an earlier step scores higher):
the reference that reads nothing. Under these labels a step is wrong only at or after the first error, so
later steps are wrong more often, and on hard levels, where most samples go wrong late, position alone
reaches a high AUROC (0.94 at level 5 of the pointer chains, on the tiny generator's samples). A scorer
shows a step check only where it beats that reference, not 0.5.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torchmetrics.functional.classification import binary_auroc

from e2h.data.prompts import question_from_prompt
from e2h.data.records import subset_keys
from e2h.data.exact_check import checker_for


class LabelledStep(NamedTuple):
    level: int | None
    score: float
    error: str | None  # the checker's error kind; None for a right step
    position: int  # 1 for the solution's first step (filler steps not counted)


def labelled_steps(rows: Iterable[Mapping[str, Any]]) -> list[LabelledStep]:
    """Every labelled step of the samples of generated benchmarks in `rows` (scored sample lines); other rows,
    and rows of a scorer that gives no step scores (a solution score only), are skipped."""
    out = []
    for row in rows:
        question = question_from_prompt(row.get("prompt", ""))
        checker = checker_for(str(row.get("problem_id")))
        if checker is None or question is None or "steps" not in row or "step_scores" not in row:
            continue
        position = 0
        for step, score, error in zip(row["steps"], row["step_scores"], checker.step_errors(question, row["steps"])):
            if checker.is_filler(step):
                continue  # always right and no reasoning in it: counting it would flatter the scorer
            position += 1
            out.append(LabelledStep(row.get("level"), float(score), error, position))
            if error is not None:
                break  # PRM800K convention: nothing is labelled after the first wrong step
    return out


def _auroc(scores: list[float], labels: list[int]) -> float | None:
    if len(set(labels)) < 2:
        return None
    return float(binary_auroc(torch.tensor(scores, dtype=torch.float64), torch.tensor(labels)))


def step_auroc(steps: list[LabelledStep]) -> dict[str, Any]:
    """``{"by_subset": {key: {"auroc", "position_auroc", "steps", "wrong"}}, "by_kind": {kind: {"auroc",
    "wrong"}}}``, keys as `e2h.data.records.subset_keys` (level_4, hard, all...); see the module docstring."""
    by_subset: dict[str, list[LabelledStep]] = defaultdict(list)
    for step in steps:
        for key in subset_keys(step.level):
            by_subset[key].append(step)
    right = [step.score for step in steps if step.error is None]
    kinds: dict[str, list[float]] = defaultdict(list)
    for step in steps:
        if step.error is not None:
            kinds[step.error].append(step.score)
    return {
        "by_subset": {
            key: {
                "auroc": _auroc([s.score for s in group], [int(s.error is None) for s in group]),
                "position_auroc": _auroc([-float(s.position) for s in group], [int(s.error is None) for s in group]),
                "steps": len(group),
                "wrong": sum(s.error is not None for s in group),
            }
            for key, group in by_subset.items()
        },
        "by_kind": {
            kind: {"auroc": _auroc(right + wrong, [1] * len(right) + [0] * len(wrong)), "wrong": len(wrong)}
            for kind, wrong in sorted(kinds.items())
        },
    }


def format_step_auroc(name: str, figures: dict[str, Any]) -> str:
    """`step_auroc`'s figures as Markdown: one row per subset, then one per error kind (0.5 is chance)."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    keys = sorted(k for k in figures["by_subset"] if k.startswith("level")) + [
        k for k in ("easy", "hard", "all") if k in figures["by_subset"]
    ]
    lines = [
        f"## step AUROC of {name} on the samples' own steps (exact labels; 0.5 is chance, and the step's "
        "position alone, which reads nothing, is the reference to beat)",
        "",
        "| subset | AUROC | position alone | steps | wrong |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in keys:
        f = figures["by_subset"][key]
        lines.append(f"| {key} | {cell(f['auroc'])} | {cell(f['position_auroc'])} | {f['steps']} | {f['wrong']} |")
    for kind, f in figures["by_kind"].items():
        lines.append(f"| error kind {kind} (against every right step) | {cell(f['auroc'])} | | | {f['wrong']} |")
    return "\n".join(lines) + "\n"
