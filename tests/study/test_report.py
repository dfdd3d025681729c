"""The study's report turns what the stages wrote into the paper's tables, each figure with its standard error,
chance mark, clip rate and exactly-solved share; a stage not run reads '-'; study.json holds the same figures."""

import json
from pathlib import Path

from e2h.study.plan import done_marker, tiny_plan
from e2h.study.report import write_report


def _metrics(folder: Path, prefix: str, values: dict[str, tuple[float, int]], clip: float = 0.0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for key, (acc, n) in values.items():
        metrics.update({f"{prefix}/acc_{key}": acc, f"{prefix}/n_{key}": n, f"{prefix}/clip_{key}": clip,
                        f"{prefix}/solved_{key}": acc / 2})
    (folder / "metrics.json").write_text(json.dumps({"stage": prefix, "global_step": 0, "metrics": metrics}))


def test_report_tables_hold_the_measured_numbers_with_errors_and_chance(tmp_path):
    plan = tiny_plan(tmp_path)
    levels = {"level_1": (1.0, 20), "level_4": (0.05, 20), "level_5": (0.5, 100), "hard": (0.425, 120)}
    _metrics(tmp_path / "eval_sft_easy", "test", levels, clip=0.25)
    _metrics(tmp_path / "eval_ppo_prm", "test", {**levels, "level_4": (0.1, 20)})
    rerank = tmp_path / "report" / "rerank"
    rerank.mkdir(parents=True)
    rows = [{"method": m, "n": n, "subset": "hard", "accuracy": a, "problems": 40}
            for m, n, a in [("majority", 1, 0.072), ("majority", 8, 0.05), ("weighted:prm", 8, 0.1), ("pass", 8, 0.3)]]
    (rerank / "report.json").write_text(json.dumps({"ns": [1, 8], "methods": ["majority", "weighted:prm", "pass"],
                                                    "rows": rows, "problems": {"hard": 40}, "n_max": 8}))
    for stage in plan.stages[:2]:
        done_marker(plan, stage).parent.mkdir(parents=True, exist_ok=True)
        done_marker(plan, stage).write_text('{"seconds": 12.4}')
    text = write_report(plan).read_text()
    # by hand: SE = sqrt(p(1-p)/n); level 4: sqrt(.05*.95/20) = 4.9 points, within 2 x sqrt(.1*.9/20) = 13.4
    # points of the 10% chance level (noise, marked); level 5: sqrt(.25/100) = 5.0 points, 40 points above chance
    assert ("| SFT on easy levels (Easy-to-Hard) | 100.0% ± 0.0 | - | - | 5.0% ± 4.9† | 50.0% ± 5.0 | - "
            "| 42.5% ± 4.5 | - |") in text
    assert "| SFT on easy levels (Easy-to-Hard) | 50.0% / 25% | - | - | 2.5% / 25% | 25.0% / 25% |" in text
    assert "| PPO, easy outcome + PRM process reward | 100.0% ± 0.0 | - | - | 10.0% ± 6.7† |" in text
    assert "| SFT on all levels (Full) | - |" in text  # not run: no number invented
    assert "ICL, exemplars" not in text and "No ICL rows" in text  # a random model's ICL measures nothing
    assert "| majority | 7.2% ± 4.1 | 5.0% ± 3.4 |" in text and "| weighted:prm | - | 10.0% ± 4.7 |" in text
    # gain 5 points, SE sqrt(.1*.9/40 + .05*.95/40) = 5.9 points; gap 25 points, 20% recovered, SE 5.9/25 = 23%
    assert "| weighted:prm | 10.0% | +5.0 ± 5.9 | 25.0 | 20% ± 23 | noise |" in text
    assert "| sft_easy | Easy-to-Hard SFT (levels 1-3) | 12 |" in text
    assert "| eval_ppo_full | greedy accuracy of PPO (full) by level | not run |" in text
    assert (tmp_path / "report" / "generators.png").stat().st_size > 0

    study = json.loads((tmp_path / "report" / "study.json").read_text())
    assert study["chance"] == 0.1
    sft = study["generators"]["SFT on easy levels (Easy-to-Hard)"]["level_4"]
    assert sft == {"accuracy": 0.05, "se": (0.05 * 0.95 / 20) ** 0.5, "problems": 20, "clip_rate": 0.25, "solved": 0.025}
    gap = study["reranking"]["gap_recovered"]["hard/weighted:prm"]
    assert abs(gap["recovered"] - 0.2) < 1e-9 and abs(gap["gain"] - 0.05) < 1e-9
    claims = {c["claim"]: c for c in study["claims"]}
    improve = claims["PPO with the easy PRM improves hard accuracy over SFT"]
    assert improve["ours"]["difference"] == 0 and improve["reading"] == "noise"
    assert study["stage_seconds"]["sft_easy"] == 12.4 and study["stage_seconds"]["rerank"] is None


def test_the_math_report_has_no_chance_level_and_reads_the_evaluators_validation(tmp_path):
    """MATH answers are free-form: no chance level, no exactly-solved share (no exact checker); the evaluators
    are read from their validation on PRM800K's rated MATH500 steps, and an AUROC below chance is 'reversed'."""
    from torch.utils.tensorboard import SummaryWriter

    from e2h.study.plan import math_plan

    plan = math_plan(tmp_path, "MODEL", "PRM800K")
    _metrics(tmp_path / "eval_sft_easy", "test", {"level_4": (0.05, 20), "hard": (0.05, 20)}, clip=0.25)
    for rm, auroc in (("prm", 0.3), ("oprm", 0.7)):
        with SummaryWriter(str(tmp_path / "main" / plan.runs / rm / "tb" / "version_0")) as writer:
            writer.add_scalar("val/step_auroc_hard", 0.5, 1)
            writer.add_scalar("val/step_auroc_hard", auroc, 2)  # the last validation counts
            writer.add_scalar("val/step_auroc_level_4", auroc, 2)
    text = write_report(plan).read_text()
    assert "No chance level applies" in text and "†" not in text.split("## The Easy-to-Hard")[0]
    assert "| SFT on easy levels (Easy-to-Hard) | - | - | - | 25% | - | - | 25% | - |" in text  # clip rate only
    assert "| PRM | step AUROC, PRM800K rated steps | - | - | - | 0.30 | - | - | 0.30 | - |" in text
    study = json.loads((tmp_path / "report" / "study.json").read_text())
    assert study["chance"] is None and abs(study["evaluator_validation"]["oprm"]["step_auroc_hard"] - 0.7) < 1e-6
    claims = {c["claim"]: c for c in study["claims"]}
    assert "greedy hard accuracy (no chance level" in claims["SFT on easy levels solves some hard problems"]["note"]
    assert claims["an easy-trained PRM tells right from wrong hard steps (AUROC > 0.5)"]["reading"] == "reversed"
    assert claims["an easy-trained OPRM tells right from wrong hard steps (AUROC > 0.5)"]["reading"] == "effect"


def test_extension_rows_appear_once_run_with_the_last_round_in_the_claims(tmp_path):
    """GRPO, ReST-EM and iterative DPO rows join PPO's when their evaluations exist; the claim of each method is
    read at its last round that ran, beside the paper's figure."""
    plan = tiny_plan(tmp_path)
    _metrics(tmp_path / "eval_sft_easy", "test", {"level_1": (1.0, 100), "hard": (0.10, 100)})
    text = write_report(plan).read_text()
    assert "GRPO, easy outcome" not in text.split("## PPO and the other RL methods")[1].split("Exactly solved")[0]
    _metrics(tmp_path / "eval_grpo", "test", {"level_1": (1.0, 100), "hard": (0.16, 100)})
    _metrics(tmp_path / "eval_rest_em_1", "test", {"level_1": (0.9, 100), "hard": (0.12, 100)})
    _metrics(tmp_path / "eval_dpo_1", "test", {"level_1": (0.9, 100), "hard": (0.08, 100)})
    _metrics(tmp_path / "eval_dpo_2", "test", {"level_1": (0.8, 100), "hard": (0.30, 100)})
    text = write_report(plan).read_text()
    assert "| GRPO, easy outcome + PRM process reward | 100.0% ± 0.0 |" in text
    assert "| ReST-EM round 1 (easy answers, PRM on hard) | 90.0% ± 3.0 |" in text
    assert "ReST-EM round 2" not in text  # not run: no row
    study = json.loads((tmp_path / "report" / "study.json").read_text())
    claims = {c["claim"]: c for c in study["claims"]}
    # DPO at its last round (2): 30% - 10% = 20 points; SE sqrt(.3*.7/100 + .1*.9/100) = 5.5 points: an effect
    dpo = claims["Iterative DPO with the easy PRM improves hard accuracy over SFT (round 2)"]
    assert abs(dpo["ours"]["difference"] - 0.2) < 1e-9 and dpo["reading"] == "effect"
    assert dpo["paper"].startswith("equal")
    # ReST-EM at round 1 (round 2 not run): +2 points, SE sqrt(.12*.88/100 + .09/100) = 4.4 points: noise
    rest = claims["ReST-EM with the easy PRM improves hard accuracy over SFT (round 1)"]
    assert rest["reading"] == "noise" and rest["paper"].startswith("about equal")
    assert claims["GRPO with the easy PRM improves hard accuracy over SFT"]["paper"] == "not in the paper"
    assert "| ReST-EM with the easy PRM improves hard accuracy over SFT (round 1) | about equal" in text


def test_evaluators_are_read_beside_the_step_position_reference(tmp_path):
    """On the generator's own samples, a step AUROC is set against what the step's position alone reads:
    right steps at positions 1 and 2 (scored 0.9, 0.6), a wrong one at 1 (0.5). The PRM orders both pairs
    (1.0); position alone ties one and misorders the other (0.25), so the claim's difference is +0.75."""
    from e2h.data.prompts import PromptFormat
    from e2h.study.plan import PROFILES

    plan = tiny_plan(tmp_path)
    prompt = PromptFormat("paper").prompt("6+4+7-5+9")
    rows = [
        {"problem_id": "synthetic/L4/test/0", "level": 4, "prompt": prompt, "steps": ["6+4=0 0+7-5+9", "0+7=7 7-5+9"],
         "step_scores": [0.9, 0.6]},
        {"problem_id": "synthetic/L4/test/0", "level": 4, "prompt": prompt, "steps": ["6+4=1 1+7-5+9"],
         "step_scores": [0.5]},
    ]
    path = plan.out / plan.stage("score_prm").workspace / plan.runs / PROFILES[plan.profile]["scored"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_report(plan).read_text()
    assert "| PRM | - | - | - | 1.00 (1/3) | - | - | 1.00 (1/3) | 1.00 (1/3) |" in text
    assert "| step position alone (reference) | - | - | - | 0.25 | - | - | 0.25 | 0.25 |" in text
    claims = {c["claim"]: c for c in json.loads((tmp_path / "report" / "study.json").read_text())["claims"]}
    claim = claims["an easy-trained PRM tells right from wrong hard steps (AUROC above position alone)"]
    assert abs(claim["ours"]["difference"] - 0.75) < 1e-9 and "the step position alone: 0.25" in claim["note"]
