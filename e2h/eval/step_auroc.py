"""How well a reward model's step scores separate right steps from wrong ones on a generator's own samples,
by level and by kind of error, with exact labels from a generated benchmark's checker (`e2h.data.exact_check`).

Labels follow the PRM800K convention the reward models are trained with: every step up to and including the
first wrong one is labelled (1 right, 0 wrong), the steps after it are not. A scored samples file
(`e2h predict` with a reward model) gives each sample's ``steps`` and ``step_scores``; the question is read
back from the prompt. The AUROC of a level is over all its labelled steps; the AUROC of an error kind
compares the wrong steps of that kind with all right steps. Levels or kinds with only one class get None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torchmetrics.functional.classification import binary_auroc

from e2h.data.prompts import question_from_prompt
from e2h.data.records import subset_keys
from e2h.data.exact_check import checker_for


def labelled_steps(rows: Iterable[Mapping[str, Any]]) -> list[tuple[int | None, float, str | None]]:
    """(level, step score, error kind or None for a right step) for every labelled step of the samples of
    generated benchmarks in `rows` (scored sample lines); other rows are skipped."""
    out = []
    for row in rows:
        question = question_from_prompt(row.get("prompt", ""))
        checker = checker_for(str(row.get("problem_id")))
        if checker is None or question is None:
            continue
        for step, score, error in zip(row["steps"], row["step_scores"], checker.step_errors(question, row["steps"])):
            if checker.is_filler(step):
                continue  # always right and no reasoning in it: counting it would flatter the scorer
            out.append((row.get("level"), float(score), error))
            if error is not None:
                break  # PRM800K convention: nothing is labelled after the first wrong step
    return out


def _auroc(scores: list[float], labels: list[int]) -> float | None:
    if len(set(labels)) < 2:
        return None
    return float(binary_auroc(torch.tensor(scores, dtype=torch.float64), torch.tensor(labels)))


def step_auroc(steps: list[tuple[int | None, float, str | None]]) -> dict[str, Any]:
    """``{"by_subset": {key: {"auroc", "steps", "wrong"}}, "by_kind": {kind: {"auroc", "wrong"}}}``, keys as
    `e2h.data.records.subset_keys` (level_4, hard, all...); see the module docstring."""
    by_subset: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for level, score, error in steps:
        for key in subset_keys(level):
            by_subset[key].append((score, int(error is None)))
    right = [score for _, score, error in steps if error is None]
    kinds: dict[str, list[float]] = defaultdict(list)
    for _, score, error in steps:
        if error is not None:
            kinds[error].append(score)
    return {
        "by_subset": {
            key: {
                "auroc": _auroc([s for s, _ in pairs], [y for _, y in pairs]),
                "steps": len(pairs),
                "wrong": sum(1 - y for _, y in pairs),
            }
            for key, pairs in by_subset.items()
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
    lines = [f"## step AUROC of {name} on the samples' own steps (exact labels; 0.5 is chance)", "",
             "| subset | AUROC | steps | wrong |", "|---|---:|---:|---:|"]
    for key in keys:
        f = figures["by_subset"][key]
        lines.append(f"| {key} | {cell(f['auroc'])} | {f['steps']} | {f['wrong']} |")
    for kind, f in figures["by_kind"].items():
        lines.append(f"| error kind {kind} (against every right step) | {cell(f['auroc'])} | | {f['wrong']} |")
    return "\n".join(lines) + "\n"
