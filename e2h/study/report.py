"""The study's report: tables that mirror the paper's, from what the stages wrote, and PNGs.

- Generators: ICL (exemplars from all / hard / easy levels) and SFT (full / easy) greedy accuracy by level.
- Evaluators: ORM / PRM / OPRM x majority / weighted voting / best-of-N, accuracy against N on the hard
  levels (and the easy ones), from `e2h data report`'s JSON.
- PPO (PRM reward, final-answer-only reward) against the SFT policy it started from, by level; the PPO
  training curves (reward, KL, validation accuracy).

Numbers are printed as measured; a missing stage's cells read "-". The report draws no conclusion.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from e2h.data.files import atomic_write_text
from e2h.data.records import ALL_LEVELS, level_key
from e2h.eval.plots import new_figure, save_figure
from e2h.study.plan import Plan, done_marker

LEVELS = ALL_LEVELS
GROUPS = ("easy", "hard", "all")


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _accuracy_row(metrics: dict[str, Any] | None) -> list[str]:
    """Cells for levels 1-5, easy, hard, all from a MetricsFile row (val/ or test/ keys)."""
    if metrics is None:
        return ["-"] * (len(LEVELS) + len(GROUPS))
    values = {k.split("/", 1)[1]: v for k, v in metrics["metrics"].items() if "/acc_" in k}
    names = [f"acc_{level_key(lv)}" for lv in LEVELS] + [f"acc_{g}" for g in GROUPS]
    return [f"{100 * values[n]:.1f}%" if n in values else "-" for n in names]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rerank_tables(report: dict[str, Any] | None, samples: Path) -> str:
    if report is None:
        if not samples.exists():
            return "(the sampling and re-ranking stages have not run)"
        from e2h.data.samples import read_samples
        from e2h.eval.sample_accuracy import format_summary, summarize

        return ("The re-ranking stage has not run; the samples alone (majority voting, pass@N):\n\n"
                + format_summary(summarize(read_samples(samples))))
    ns = report["ns"]
    acc = {(r["subset"], r["method"], r["n"]): r["accuracy"] for r in report["rows"]}
    parts = []
    for subset in ("hard", "easy"):
        rows = [[m] + [f"{100 * acc[(subset, m, n)]:.1f}%" if (subset, m, n) in acc else "-" for n in ns]
                for m in report["methods"]]
        parts.append(f"**{subset}** ({report['problems'].get(subset, 0)} problems, {report['n_max']} samples each)\n\n"
                     + _table(["method"] + [f"N={n}" for n in ns], rows))
    return "\n\n".join(parts)


def _tensorboard_scalars(folder: Path, tags: list[str]) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(folder.glob("**/events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in tags:
            if tag in acc.Tags()["scalars"]:
                series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in series.items()}


ICL_NOTE = {
    "tiny": "\nThe tiny profile has no pretrained model: its ICL rows run the few-shot prompting path on a randomly\n"
            "initialised model (`configs/tiny/icl.yaml`), which has no in-context ability; on MATH they measure the\n"
            "base model.\n",
}

PPO_TAGS = ["train/reward/total", "train/reward/outcome", "train/reward/process", "train/rollout/kl"] + [
    f"val/acc_{level_key(lv)}" for lv in LEVELS
] + ["val/acc_easy", "val/acc_hard"]


def _plot_ppo(curves: dict[str, dict[str, list[tuple[int, float]]]], path: Path) -> bool:
    if not any(curves.values()):
        return False
    panels = [("train/reward/total", "reward (total)"), ("train/rollout/kl", "KL to reference (nats / response)"),
              ("val/acc_easy", "greedy accuracy, easy"), ("val/acc_hard", "greedy accuracy, hard")]
    fig, axes = new_figure((4.2 * len(panels), 3.2), len(panels))
    for ax, (tag, title) in zip(axes, panels):
        for arm, series in curves.items():
            if tag in series:
                steps, values = zip(*series[tag])
                ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=arm)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
    axes[0].legend()
    save_figure(fig, path, dpi=110)
    return True


def _plot_levels(rows: dict[str, list[str]], path: Path, title: str) -> None:
    fig, (ax,) = new_figure((7, 3.2), 1)
    width = 0.8 / max(len(rows), 1)
    for i, (name, cells) in enumerate(rows.items()):
        values = [float(c.rstrip("%")) if c != "-" else 0.0 for c in cells[: len(LEVELS)]]
        ax.bar([lv + (i - (len(rows) - 1) / 2) * width for lv in LEVELS], values, width, label=name)
    ax.set_xticks(list(LEVELS), [f"level {lv}" for lv in LEVELS])
    ax.axvline(3.5, color="gray", lw=0.8, ls="--")  # easy | hard
    ax.set_ylabel("greedy accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def write_report(plan: Plan) -> Path:
    """Write `report/study.md` (and PNGs beside it) in the study's folder; returns its path."""
    folder = plan.report_folder()
    folder.mkdir(parents=True, exist_ok=True)
    metrics = lambda name: _read_json(plan.metrics_file(name))  # noqa: E731
    header = ["", *[f"L{lv}" for lv in LEVELS], "easy (1-3)", "hard (4-5)", "all"]

    generators = {
        "ICL, exemplars from all levels": _accuracy_row(metrics("icl_full")),
        "ICL, exemplars from hard levels": _accuracy_row(metrics("icl_hard")),
        "ICL, exemplars from easy levels": _accuracy_row(metrics("icl_easy")),
        "SFT on all levels (Full)": _accuracy_row(metrics("eval_sft_full")),
        "SFT on easy levels (Easy-to-Hard)": _accuracy_row(metrics("eval_sft_easy")),
    }
    ppo = {
        "Easy-to-Hard SFT (start of PPO)": generators["SFT on easy levels (Easy-to-Hard)"],
        "PPO, final-answer reward only": _accuracy_row(metrics("eval_ppo_outcome")),
        "PPO, easy outcome + PRM process reward": _accuracy_row(metrics("eval_ppo_prm")),
    }
    _plot_levels(generators, folder / "generators.png", "generators: greedy accuracy by level")
    _plot_levels(ppo, folder / "ppo.png", "PPO against its SFT start: greedy accuracy by level")
    curves = {
        "PRM reward": _tensorboard_scalars(plan.ppo_folder("ppo_prm"), PPO_TAGS),
        "final answer only": _tensorboard_scalars(plan.ppo_folder("ppo_outcome"), PPO_TAGS),
    }
    has_curves = _plot_ppo(curves, folder / "ppo_curves.png")
    rerank = _read_json(plan.rerank_report())

    times, spans = [], []
    for stage in plan.stages:
        path = done_marker(plan, stage)
        marker = _read_json(path)
        times.append([stage.name, stage.about, f"{marker['seconds']:.0f}" if marker else "not run"])
        if marker:  # the marker is written when the stage ends
            spans.append((path.stat().st_mtime - marker["seconds"], path.stat().st_mtime))
    total = sum(float(t[2]) for t in times if t[2] != "not run")
    wall = max(end for _, end in spans) - min(start for start, _ in spans) if spans else 0.0
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"

    def ppo_curve_rows(arm: str) -> list[list[str]]:
        series = curves[arm]
        rows = []
        for tag in ("train/reward/total", "train/reward/outcome", "train/reward/process", "train/rollout/kl"):
            points = series.get(tag, [])
            if points:
                q = [points[0], points[len(points) // 2], points[-1]]
                rows.append([tag.split("/", 1)[1]] + [f"{v:.3f} (step {s})" for s, v in q])
        return rows

    text = f"""# Easy-to-hard study: {plan.profile} profile

Measured {time.strftime('%Y-%m-%d %H:%M', time.localtime())} on {device} (torch {torch.__version__}, Python
{platform.python_version()}). Every number below is one run with the seeds in the configs
(`seed_everything: 0`); sizes are those of the configs under `configs/{plan.profile}/` named in each stage's
command (`{plan.out.name}/logs/STAGE.log` starts with it). Wall time from the first stage's start to the last
stage's end: {wall:.0f} s ({wall / 60:.0f} min); the stages' own times add up to {total:.0f} s (stages ran side
by side).

## Generators: greedy accuracy by level (test split)

{_table(header, [[name, *cells] for name, cells in generators.items()])}
{ICL_NOTE.get(plan.profile, "")}
![generators](generators.png)

## Evaluators trained on easy levels: re-ranking the Easy-to-Hard generator's samples

Majority voting, weighted voting (sum of a reward model's solution scores per answer) and best-of-N (the
highest-scored solution), averaged over random subsets of N of the samples; `pass` is the ceiling (any of
N correct); `mean` is one sample's accuracy.

{_rerank_tables(rerank, plan.samples_file())}
{"" if rerank is None else chr(10) + "![accuracy against N](rerank/accuracy_vs_n.png)" + chr(10)}
## PPO against its SFT start: greedy accuracy by level (test split)

Prompts of levels 4-5 are trained on with their answers hidden (a constant outcome reward there).

{_table(header, [[name, *cells] for name, cells in ppo.items()])}

![ppo](ppo.png)
"""
    if has_curves:
        for arm in curves:
            rows = ppo_curve_rows(arm)
            if rows:
                text += f"\nPPO ({arm}) training, first / middle / last rollout:\n\n"
                text += _table(["quantity", "first", "middle", "last"], rows) + "\n"
        text += "\n![ppo curves](ppo_curves.png)\n"
    text += "\n## Stages and wall time\n\n" + _table(["stage", "what", "seconds"], times) + "\n"
    path = folder / "study.md"
    atomic_write_text(text, path)
    return path
