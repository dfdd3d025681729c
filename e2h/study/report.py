"""The study's report: tables that mirror the paper's, from what the stages wrote, and PNGs.

- Generators: ICL (exemplars from all / hard / easy levels) and SFT (full / easy) greedy accuracy by level.
- Evaluators: ORM / PRM / OPRM x majority / weighted voting / best-of-N, accuracy against N on the hard
  levels (and the easy ones), from `e2h data report`'s JSON.
- PPO (PRM reward, final-answer-only reward) against the SFT policy it started from, by level; the PPO
  training curves (reward, KL, validation accuracy).

Every figure carries what a reader needs to trust it: its standard error (± one, over problems), the chance
level where one exists (a guesser's accuracy on the synthetic benchmark), a mark on figures within two standard
errors of chance (noise), the clip rate (completions cut by the token budget) and, on the synthetic benchmark,
how many "correct" answers came from solutions whose every step the exact checker accepts. Evaluators get their
step AUROC on the generator's own samples, by level and error kind. A last table puts each of the paper's
claims beside what this run measured. Everything is also written to ``report/study.json``.

Numbers are printed as measured; a missing stage's cells read "-".
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from e2h.data.files import atomic_write_text, read_jsonl
from e2h.data.records import ALL_LEVELS, level_key
from e2h.data.synthetic import ANSWER_CHANCE
from e2h.eval.plots import new_figure, save_figure
from e2h.eval.stats import NOISE_NOTE, is_noise, percent, standard_error
from e2h.eval.step_auroc import labelled_steps, step_auroc
from e2h.study.plan import PROFILES, SELF_TRAINING_ROUNDS, Plan, done_marker

LEVELS = ALL_LEVELS
GROUPS = ("easy", "hard", "all")


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


KEYS = [level_key(lv) for lv in LEVELS] + list(GROUPS)
# A guesser's accuracy, where the benchmark has one (uniform digit answers). MATH answers are free-form
# (fractions, expressions, intervals, ...): a guess is right with probability ~0, so no chance level applies.
CHANCE = {"tiny": ANSWER_CHANCE}
# Profiles whose problems have an exact step checker (the synthetic benchmark): exactly-solved shares and
# step AUROC on the generator's own samples exist only there.
EXACT_CHECKER = {"tiny"}


def _greedy_figures(metrics: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """Per subset key (level_1 ... all): accuracy, its standard error, problems, clip rate and the exactly
    solved fraction, from a MetricsFile row (val/ or test/ keys; see `e2h.eval.greedy`)."""
    if metrics is None:
        return {}
    values = {k.split("/", 1)[1]: v for k, v in metrics["metrics"].items() if "/" in k}
    out = {}
    for key in KEYS:
        if f"acc_{key}" not in values:
            continue
        acc, n = values[f"acc_{key}"], int(values.get(f"n_{key}", 0))
        out[key] = {"accuracy": acc, "se": standard_error(acc, n), "problems": n,
                    "clip_rate": values.get(f"clip_{key}"), "solved": values.get(f"solved_{key}")}
    return out


def _accuracy_cells(figures: dict[str, dict[str, float]], chance: float | None) -> list[str]:
    return [percent(f["accuracy"], f["problems"], chance) if (f := figures.get(k)) else "-" for k in KEYS]


def _trust_cells(figures: dict[str, dict[str, float]], exact: bool = True) -> list[str]:
    """'solved / clip' per subset: exactly solved fraction (synthetic) and the clip rate; the clip rate alone
    where no exact checker exists (`exact` False: MATH)."""
    cells = []
    for key in KEYS:
        f = figures.get(key)
        if not f:
            cells.append("-")
            continue
        solved = "-" if f["solved"] is None else f"{100 * f['solved']:.1f}%"
        clip = "-" if f["clip_rate"] is None else f"{100 * f['clip_rate']:.0f}%"
        cells.append(f"{solved} / {clip}" if exact else clip)
    return cells


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _rerank_figures(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The re-ranking report's accuracies with standard errors, and per method at the largest N on each
    subset: the gain over majority voting and the share of the majority-to-pass@N gap it recovers."""
    if report is None:
        return None
    n_max, cells = report["n_max"], {}
    for r in report["rows"]:
        cells[(r["subset"], r["method"], r["n"])] = {"accuracy": r["accuracy"], "problems": r["problems"],
                                                     "se": standard_error(r["accuracy"], r["problems"])}
    gaps = {}
    for subset in report["problems"]:
        majority, ceiling = cells.get((subset, "majority", n_max)), cells.get((subset, "pass", n_max))
        if majority is None or ceiling is None:
            continue
        for method in report["methods"]:
            cell = cells.get((subset, method, n_max))
            if cell is None or method in ("majority", "pass", "mean"):
                continue
            n = cell["problems"]
            gain = cell["accuracy"] - majority["accuracy"]
            # unpaired (conservative) standard error of the difference of two proportions on the same problems
            gain_se = (standard_error(cell["accuracy"], n) ** 2 + standard_error(majority["accuracy"], n) ** 2) ** 0.5
            room = ceiling["accuracy"] - majority["accuracy"]
            gaps[f"{subset}/{method}"] = {
                "subset": subset, "method": method, "n": n_max, "accuracy": cell["accuracy"], "gain": gain,
                "gain_se": gain_se, "gap": room, "recovered": gain / room if room > 0 else None,
                "recovered_se": gain_se / room if room > 0 else None,
            }
    return {"n_max": n_max, "ns": report["ns"], "methods": report["methods"], "problems": report["problems"],
            "cells": {"/".join(map(str, k)): v for k, v in cells.items()}, "gap_recovered": gaps}


def _rerank_tables(rerank: dict[str, Any] | None, samples_summary: str | None) -> str:
    if rerank is None:
        if samples_summary is None:
            return "(the sampling and re-ranking stages have not run)"
        return "The re-ranking stage has not run; the samples alone are above."
    ns, parts = rerank["ns"], []
    for subset in ("hard", "easy"):
        n = rerank["problems"].get(subset, 0)
        rows = []
        for m in rerank["methods"]:
            row = [m]
            for k in ns:
                cell = rerank["cells"].get(f"{subset}/{m}/{k}")
                row.append(percent(cell["accuracy"], cell["problems"]) if cell else "-")
            rows.append(row)
        parts.append(f"**{subset}** ({n} problems, {rerank['n_max']} samples each)\n\n"
                     + _table(["method"] + [f"N={k}" for k in ns], rows))
    gap_rows = []
    for g in rerank["gap_recovered"].values():
        if g["subset"] != "hard":
            continue
        recovered = "-" if g["recovered"] is None else f"{100 * g['recovered']:.0f}% ± {100 * g['recovered_se']:.0f}"
        effect = "noise" if abs(g["gain"]) <= 2 * g["gain_se"] else ("gain" if g["gain"] > 0 else "loss")
        gap_rows.append([g["method"], f"{100 * g['accuracy']:.1f}%", f"{100 * g['gain']:+.1f} ± {100 * g['gain_se']:.1f}",
                         f"{100 * g['gap']:.1f}", recovered, effect])
    if gap_rows:
        parts.append(f"**Hard levels at N={rerank['n_max']}: gain over majority voting, and the share of the "
                     "majority-to-pass@N gap it recovers** (standard errors unpaired, so conservative; "
                     "*noise*: the gain is within two standard errors of zero)\n\n"
                     + _table(["method", "accuracy", "gain over majority (points)", "gap (points)", "gap recovered",
                               "reading"], gap_rows))
    return "\n\n".join(parts)


def _evaluator_figures(plan: Plan) -> dict[str, Any]:
    """Step AUROC of each scorer on the generator's own samples (exact labels), from its scored file."""
    scored = PROFILES[plan.profile]["scored"]
    out = {}
    for rm in ("orm", "prm", "oprm"):
        try:
            path = plan.out / plan.stage(f"score_{rm}").workspace / plan.runs / scored
        except KeyError:
            continue
        if path.exists():
            steps = labelled_steps(row for _, row in read_jsonl(path))
            if steps:
                out[rm] = step_auroc(steps)
    return out


def _validation_figures(plan: Plan) -> dict[str, dict[str, float]]:
    """Each reward model's last validation AUROC by subset (``step_auroc_all``, ``outcome_auroc_hard``, ...),
    from its fit's TensorBoard logs. On MATH this is the evaluators' measure: step AUROC on PRM800K's
    human-rated steps of MATH500 problems and outcome AUROC on the generator's graded MATH500 samples."""
    tags = [f"val/{kind}_auroc_{key}" for kind in ("step", "outcome") for key in KEYS]
    out = {}
    for rm in ("orm", "prm", "oprm"):
        try:
            folder = plan.out / plan.stage(rm).workspace / plan.runs / rm
        except KeyError:
            continue
        series = _tensorboard_scalars(folder, tags) if folder.is_dir() else {}
        if series:
            out[rm] = {tag.split("/", 1)[1]: points[-1][1] for tag, points in series.items()}
    return out


def _validation_table(validation: dict[str, dict[str, float]]) -> str:
    if not validation:
        return "(the reward models have not been validated: their training stages have not run)"
    rows = []
    for rm, figures in validation.items():
        for kind, what in (("step", "step AUROC, PRM800K rated steps"), ("outcome", "outcome AUROC, graded samples")):
            cells = [f"{v:.2f}" if (v := figures.get(f"{kind}_auroc_{k}")) is not None else "-" for k in KEYS]
            if any(c != "-" for c in cells):
                rows.append([rm.upper(), what, *cells])
    if not rows:
        return "(no AUROC was measured: the validation sets held one class only, or too few labels)"
    return ("The reward models' last validation (their configs' `val` sets): AUROC by level, 0.5 is chance; "
            "\"-\": not measured (a subset with one class only, or none).\n\n"
            + _table(["reward model", "measured on", *[f"L{lv}" for lv in LEVELS], "easy", "hard", "all"], rows))


def _auroc_cell(entry: dict[str, Any] | None) -> str:
    if not entry or entry["auroc"] is None:
        return "-"
    return f"{entry['auroc']:.2f} ({entry['wrong']}/{entry.get('steps', entry['wrong'])})"


def _evaluator_tables(evaluators: dict[str, Any]) -> str:
    if not evaluators:
        return "(no scored samples with an exact checker: the scoring stages have not run, or the data is not synthetic)"
    rows = [[rm.upper()] + [_auroc_cell(f["by_subset"].get(k)) for k in KEYS] for rm, f in evaluators.items()]
    # Every evaluator scored the same samples, so one reference row serves them all.
    reference = next(iter(evaluators.values()))["by_subset"]
    rows.append(["step position alone (reference)"] + [
        "-" if (e := reference.get(k)) is None or e.get("position_auroc") is None else f"{e['position_auroc']:.2f}"
        for k in KEYS
    ])
    by_level = _table(["reward model", *[f"L{lv}" for lv in LEVELS], "easy", "hard", "all"], rows)
    kinds = sorted({k for f in evaluators.values() for k in f["by_kind"]})
    by_kind = _table(["reward model", *kinds],
                     [[rm.upper()] + [f"{f['by_kind'][k]['auroc']:.2f} ({f['by_kind'][k]['wrong']})"
                                      if k in f["by_kind"] and f["by_kind"][k]["auroc"] is not None else "-"
                                      for k in kinds] for rm, f in evaluators.items()])
    return (f"By level: AUROC (wrong steps / labelled steps). 0.5 is chance, and the step's position alone, which "
            "reads nothing, is the reference a step check must beat (later steps are wrong more often).\n\n"
            f"{by_level}\n\n"
            f"By kind of error (a wrong step of that kind against all right steps; wrong steps counted):\n\n{by_kind}")


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
    "tiny": "\nNo ICL rows: the tiny profile has no pretrained model, and few-shot prompting of a random model measures "
            "nothing (the math profile has them).\n",
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
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend()
    save_figure(fig, path, dpi=110)
    return True


def _plot_levels(rows: dict[str, dict[str, dict[str, float]]], path: Path, title: str, chance: float | None) -> None:
    fig, (ax,) = new_figure((7, 3.2), 1)
    width = 0.8 / max(len(rows), 1)
    for i, (name, figures) in enumerate(rows.items()):
        keys = [level_key(lv) for lv in LEVELS]
        values = [100 * figures[k]["accuracy"] if k in figures else 0.0 for k in keys]
        errors = [100 * figures[k]["se"] if k in figures else 0.0 for k in keys]
        ax.bar([lv + (i - (len(rows) - 1) / 2) * width for lv in LEVELS], values, width, yerr=errors, label=name)
    if chance is not None:
        ax.axhline(100 * chance, color="black", lw=0.8, ls=":", label="chance")
    ax.set_xticks(list(LEVELS), [f"level {lv}" for lv in LEVELS])
    ax.axvline(3.5, color="gray", lw=0.8, ls="--")  # easy | hard
    ax.set_ylabel("greedy accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110)


def _difference(a: dict[str, float] | None, b: dict[str, float] | None) -> dict[str, float] | None:
    """a - b of two accuracies on the same problems, with an unpaired (conservative) standard error."""
    if not a or not b:
        return None
    return {"difference": a["accuracy"] - b["accuracy"], "se": (a["se"] ** 2 + b["se"] ** 2) ** 0.5}


def _claims(study: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's claims, each beside this run's measurement of it (hard levels)."""
    gen, ppo, chance = study["generators"], study["ppo"], study["chance"]
    easy = gen.get("SFT on easy levels (Easy-to-Hard)", {}).get("hard")
    claims = []
    if easy:
        measured = {"difference": easy["accuracy"] - (chance or 0.0), "se": easy["se"]}
        solved = "" if easy["solved"] is None else f"; exactly solved {100 * easy['solved']:.1f}%"
        if chance is None:  # free-form answers (MATH): any right hard answer is generalisation
            claims.append({"claim": "SFT on easy levels solves some hard problems", "ours": measured,
                           "note": f"greedy hard accuracy (no chance level: free-form answers){solved}"})
        else:
            claims.append({"claim": "SFT on easy levels generalises to hard problems (above chance)",
                           "ours": measured, "note": f"greedy hard accuracy minus chance{solved}"})
    for rm in ("prm", "oprm"):
        auroc = study["evaluators"].get(rm, {}).get("by_subset", {}).get("hard")
        validated = study.get("evaluator_validation", {}).get(rm, {}).get("step_auroc_hard")
        if auroc and auroc["auroc"] is not None and auroc.get("position_auroc") is not None:
            # On the generator's own samples (exact checker), against what the step's position alone reads.
            value, reference = auroc["auroc"], auroc["position_auroc"]
            claims.append({
                "claim": f"an easy-trained {rm.upper()} tells right from wrong hard steps (AUROC above position alone)",
                "ours": {"difference": value - reference, "se": None},
                "note": f"AUROC {value:.2f} on {auroc['steps']} labelled hard steps; the step position alone: "
                        f"{reference:.2f}",
            })
        elif validated is not None:  # MATH: PRM800K's human-rated steps
            claims.append({"claim": f"an easy-trained {rm.upper()} tells right from wrong hard steps (AUROC > 0.5)",
                           "ours": {"difference": validated - 0.5, "se": None},
                           "note": f"AUROC {validated:.2f} on PRM800K's rated steps of hard MATH500 problems"})
    rerank = study["reranking"]
    if rerank:
        for rm in ("prm", "oprm", "orm"):
            g = rerank["gap_recovered"].get(f"hard/weighted:{rm}")
            if g:
                claims.append({"claim": f"weighted voting with the easy {rm.upper()} beats majority voting on hard problems",
                               "ours": {"difference": g["gain"], "se": g["gain_se"]}, "note": f"N={g['n']}"})
        prm, orm = rerank["gap_recovered"].get("hard/weighted:prm"), rerank["gap_recovered"].get("hard/weighted:orm")
        if prm and orm:
            claims.append({"claim": "process supervision (PRM) re-ranks better than outcome supervision (ORM)",
                           "ours": {"difference": prm["accuracy"] - orm["accuracy"],
                                    "se": (prm["gain_se"] ** 2 + orm["gain_se"] ** 2) ** 0.5 / 2 ** 0.5},
                           "note": f"weighted voting, N={prm['n']}"})
    start = ppo.get("Easy-to-Hard SFT (start of PPO)", {}).get("hard")
    with_prm = ppo.get("PPO, easy outcome + PRM process reward", {}).get("hard")
    outcome = ppo.get("PPO, final-answer reward only (easy answers)", {}).get("hard")
    full = ppo.get("PPO, final-answer reward on all levels (full supervision)", {}).get("hard")
    for claim, a, b in (
        ("PPO with the easy PRM improves hard accuracy over SFT", with_prm, start),
        ("PPO with the easy PRM beats PPO with easy final answers only", with_prm, outcome),
        ("PPO with the easy PRM approaches full supervision (difference to it)", with_prm, full),
    ):
        if (d := _difference(a, b)) is not None:
            claims.append({"claim": claim, "ours": d, "note": "greedy hard accuracy"})
    # the extensions, each at its last round that ran
    rows = {"GRPO": [("", GRPO_ROW)]}
    for method, row in (("ReST-EM", REST_EM_ROW), ("Iterative DPO", DPO_ROW)):
        rows[method] = [(f" (round {r})", row.format(r=r)) for r in range(SELF_TRAINING_ROUNDS, 0, -1)]
    for method, candidates in rows.items():
        ran = [(rounds, row) for rounds, row in candidates if row in ppo]
        if ran and (d := _difference(ppo[ran[0][1]].get("hard"), start)) is not None:
            claims.append({"claim": f"{method} with the easy PRM improves hard accuracy over SFT{ran[0][0]}", "ours": d,
                           "note": "greedy hard accuracy", "paper": PAPER_HARD[method]})
    for c in claims:
        d = c["ours"]
        if d["se"] is None:
            # an AUROC 0.05 or more below chance is a reversed ranking, not an effect
            c["reading"] = "effect" if d["difference"] > 0.05 else "reversed" if d["difference"] < -0.05 else "none"
        else:
            c["reading"] = "noise" if abs(d["difference"]) <= 2 * d["se"] else ("effect" if d["difference"] > 0 else "reversed")
    return claims


def _claim_rows(claims: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for c in claims:
        d = c["ours"]
        if c["claim"].startswith("an easy-trained"):
            ours = f"AUROC {0.5 + d['difference']:.2f}"
        else:
            ours = f"{100 * d['difference']:+.1f} points" + ("" if d["se"] is None else f" ± {100 * d['se']:.1f}")
        rows.append([c["claim"], c.get("paper", "yes"), ours, c["reading"], c["note"]])
    return rows


GENERATOR_STAGES = {
    "ICL, exemplars from all levels": "icl_full",
    "ICL, exemplars from hard levels": "icl_hard",
    "ICL, exemplars from easy levels": "icl_easy",
    "SFT on all levels (Full)": "eval_sft_full",
    "SFT on easy levels (Easy-to-Hard)": "eval_sft_easy",
}
PPO_STAGES = {
    "PPO, easy outcome + PRM process reward": "eval_ppo_prm",
    "PPO, final-answer reward only (easy answers)": "eval_ppo_outcome",
    "PPO, final-answer reward on all levels (full supervision)": "eval_ppo_full",
}
# The extension stages (bin/study.py --extensions): rows appear once they have run.
GRPO_ROW = "GRPO, easy outcome + PRM process reward"
REST_EM_ROW = "ReST-EM round {r} (easy answers, PRM on hard)"
DPO_ROW = "Iterative DPO round {r} (easy answers + PRM, PRM on hard)"
EXTENSION_STAGES = {
    GRPO_ROW: "eval_grpo",
    **{REST_EM_ROW.format(r=r): f"eval_rest_em_{r}" for r in range(1, SELF_TRAINING_ROUNDS + 1)},
    **{DPO_ROW.format(r=r): f"eval_dpo_{r}" for r in range(1, SELF_TRAINING_ROUNDS + 1)},
}
# The paper's 7B figures for these methods (PRM800K setting, greedy hard MATH500 accuracy; Sun et al. 2024,
# table 2): SFT 12.2, ReST-EM 12.6, iterative DPO 12.2, PPO with the easy PRM 14.9. GRPO is not in the paper.
PAPER_HARD = {"ReST-EM": "about equal (12.6 vs 12.2, 7B)", "Iterative DPO": "equal (12.2 vs 12.2, 7B)",
              "GRPO": "not in the paper"}


def _stage_times(plan: Plan) -> tuple[dict[str, float | None], float]:
    """Each stage's own seconds (None: not run), and the wall time from the first start to the last end."""
    times, spans = {}, []
    for stage in plan.stages:
        path = done_marker(plan, stage)
        marker = _read_json(path)
        times[stage.name] = marker["seconds"] if marker else None
        if marker:  # the marker is written when the stage ends
            spans.append((path.stat().st_mtime - marker["seconds"], path.stat().st_mtime))
    wall = max(end for _, end in spans) - min(start for start, _ in spans) if spans else 0.0
    return times, wall


def collect(plan: Plan) -> dict[str, Any]:
    """Every figure of the report, as `report/study.json` holds it."""
    metrics = lambda name: _read_json(plan.metrics_file(name))  # noqa: E731
    known = {s.name for s in plan.stages}
    generators = {name: _greedy_figures(metrics(stage)) for name, stage in GENERATOR_STAGES.items() if stage in known}
    ppo = {"Easy-to-Hard SFT (start of PPO)": generators.get("SFT on easy levels (Easy-to-Hard)", {})}
    ppo.update({name: _greedy_figures(metrics(stage)) for name, stage in PPO_STAGES.items() if stage in known})
    ppo.update({name: _greedy_figures(metrics(stage)) for name, stage in EXTENSION_STAGES.items()
                if stage in known and metrics(stage) is not None})
    samples = None
    if plan.samples_file().exists():
        from e2h.data.samples import read_samples
        from e2h.eval.sample_accuracy import summarize

        samples = {k: acc.figures() for k, acc in summarize(read_samples(plan.samples_file())).items()}
    times, wall = _stage_times(plan)
    study = {
        "profile": plan.profile,
        "measured": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "chance": CHANCE.get(plan.profile),
        "generators": generators,
        "samples": samples,
        "evaluators": _evaluator_figures(plan),
        "evaluator_validation": _validation_figures(plan),
        "reranking": _rerank_figures(_read_json(plan.rerank_report())),
        "ppo": ppo,
        "stage_seconds": times,
        "wall_seconds": wall,
    }
    study["claims"] = _claims(study)
    return study


def write_report(plan: Plan) -> Path:
    """Write `report/study.md`, `report/study.json` (and PNGs) in the study's folder; returns the Markdown's path."""
    folder = plan.report_folder()
    folder.mkdir(parents=True, exist_ok=True)
    study = collect(plan)
    chance = study["chance"]
    header = ["", *[f"L{lv}" for lv in LEVELS], "easy (1-3)", "hard (4-5)", "all"]
    generators, ppo = study["generators"], study["ppo"]
    _plot_levels(generators, folder / "generators.png", "generators: greedy accuracy by level", chance)
    _plot_levels(ppo, folder / "ppo.png", "PPO against its SFT start: greedy accuracy by level", chance)
    curves = {
        arm: _tensorboard_scalars(plan.ppo_folder(stage), PPO_TAGS)
        for arm, stage in (("PRM reward", "ppo_prm"), ("final answer only", "ppo_outcome"), ("full supervision", "ppo_full"))
        if stage in {s.name for s in plan.stages}
    }
    has_curves = _plot_ppo(curves, folder / "ppo_curves.png")
    rerank = study["reranking"]
    samples_summary = None
    if plan.samples_file().exists():
        from e2h.data.samples import read_samples
        from e2h.eval.sample_accuracy import format_summary, summarize

        samples_summary = format_summary(summarize(read_samples(plan.samples_file())))
    times, wall = study["stage_seconds"], study["wall_seconds"]
    total = sum(t for t in times.values() if t is not None)
    chance_line = (
        f"Chance: a guessed answer is right {chance:.0%} of the time, so every accuracy is read against {chance:.0%}; "
        f"{NOISE_NOTE}" if chance is not None else
        "No chance level applies: MATH answers are free-form (numbers, fractions, expressions, intervals), so a "
        "guessed answer is right with probability about 0 and every accuracy is read against 0."
    )
    exact = plan.profile in EXACT_CHECKER
    if exact:
        trust_note = ("What stands behind those answers: the share of problems solved with every step right (the "
                      "exact checker, synthetic problems only) / the clip rate (completions cut by the token budget). "
                      "An accuracy above the solved share is lucky answers.")
        evaluators_text = ("Step AUROC on the Easy-to-Hard generator's own samples, with exact step labels from the "
                           "checker (labelled up to and including the first wrong step, as the reward models are "
                           f"trained).\n\n{_evaluator_tables(study['evaluators'])}")
    else:
        trust_note = ("The clip rate (completions cut by the token budget) behind those answers; MATH has no exact "
                      "step checker, so there is no exactly-solved share.")
        evaluators_text = ("MATH has no exact step checker, so the generator's own samples carry outcome labels only. "
                           "The evaluators are measured where human step labels exist: PRM800K's rated steps of "
                           "MATH500 problems (never trained on).\n\n" + _validation_table(study["evaluator_validation"]))
    smoke_note = ("\n**A smoke run**: every stage was cut to a few optimizer steps, one evaluation batch and (--micro) a "
                  "subset of problems with short generations; its numbers say nothing about the method, only that "
                  "every stage ran and handed on what the next one reads.\n" if plan.smoke else "")

    def ppo_curve_rows(arm: str) -> list[list[str]]:
        series = curves[arm]
        rows = []
        for tag in ("train/reward/total", "train/reward/outcome", "train/reward/process", "train/rollout/kl"):
            points = series.get(tag, [])
            if points:
                q = [points[0], points[len(points) // 2], points[-1]]
                rows.append([tag.split("/", 1)[1]] + [f"{v:.3f} (step {s})" for s, v in q])
        return rows

    def accuracy_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
        return _table(header, [[name, *_accuracy_cells(f, chance)] for name, f in rows.items()])

    def trust_table(rows: dict[str, dict[str, dict[str, float]]]) -> str:
        return _table(header, [[name, *_trust_cells(f, exact)] for name, f in rows.items()])

    text = f"""# Easy-to-hard study: {plan.profile} profile

Measured {study['measured']} on {study['device']} (torch {study['torch']}, Python
{platform.python_version()}). Every number below is one run with the seeds in the configs
(`seed_everything: 0`); sizes are those of the configs under `configs/{plan.profile}/` and the options named in
each stage's command (`{plan.out.name}/logs/STAGE.log` starts with it). Wall time from the first stage's start to the last
stage's end: {wall:.0f} s ({wall / 60:.0f} min); the stages' own times add up to {total:.0f} s (stages ran side
by side). Every figure is also in `study.json` beside this file.
{smoke_note}
Accuracies are ± one standard error over problems. {chance_line}

## Generators: greedy accuracy by level (test split)

{accuracy_table(generators)}
{ICL_NOTE.get(plan.profile, "")}
{trust_note}

{trust_table(generators)}

![generators](generators.png)

## The Easy-to-Hard generator's samples

{samples_summary or "(the sampling stage has not run)"}

## Evaluators trained on easy levels

{evaluators_text}

## Re-ranking the Easy-to-Hard generator's samples

Majority voting, weighted voting (sum of a reward model's solution scores per answer) and best-of-N (the
highest-scored solution), averaged over random subsets of N of the samples; `pass` is the ceiling (any of
N correct); `mean` is one sample's accuracy.

{_rerank_tables(rerank, samples_summary)}
{"" if rerank is None else chr(10) + "![accuracy against N](rerank/accuracy_vs_n.png)" + chr(10)}
## PPO and the other RL methods against their SFT start: greedy accuracy by level (test split)

The PRM and final-answer-only arms train on prompts of levels 4-5 with their answers hidden (a constant
outcome reward there); the full-supervision arm sees every answer (the paper's upper reference). Rows for
GRPO, ReST-EM and iterative DPO (same PRM, same hidden hard answers) appear once their extension stages
have run (`bin/study.py --extensions`).

{accuracy_table(ppo)}

{"Exactly solved / clip rate" if exact else "Clip rate"}:

{trust_table(ppo)}

![ppo](ppo.png)
"""
    if has_curves:
        for arm in curves:
            rows = ppo_curve_rows(arm)
            if rows:
                text += f"\nPPO ({arm}) training, first / middle / last rollout:\n\n"
                text += _table(["quantity", "first", "middle", "last"], rows) + "\n"
        text += "\n![ppo curves](ppo_curves.png)\n"
    text += ("\n## The paper's claims beside this run\n\nDifferences are in points of hard-level accuracy ± one "
             "standard error; *noise*: within two standard errors of no difference.\n\n"
             + _table(["claim", "paper", "ours", "reading", "measured on"], _claim_rows(study["claims"])) + "\n")
    about = {s.name: s.about for s in plan.stages}
    extension = {s.name for s in plan.stages if s.extension}
    text += "\n## Stages and wall time\n\n" + _table(
        ["stage", "what", "seconds"],
        [[name, about[name], "not run" if t is None else f"{t:.0f}"] for name, t in times.items()
         if t is not None or name not in extension]) + "\n"  # extensions not asked for are left out
    atomic_write_text(json.dumps(study, indent=1, default=str) + "\n", folder / "study.json")
    path = folder / "study.md"
    atomic_write_text(text, path)
    return path
