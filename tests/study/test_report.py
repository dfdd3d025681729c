"""The study's report turns what the stages wrote into the paper's tables; a stage not run reads '-'."""

import json
from pathlib import Path

from e2h.study.plan import done_marker, tiny_plan
from e2h.study.report import write_report


def _metrics(folder: Path, prefix: str, values: dict[str, float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    row = {"stage": prefix, "global_step": 0, "metrics": {f"{prefix}/acc_{k}": v for k, v in values.items()}}
    (folder / "metrics.json").write_text(json.dumps(row))


def test_report_tables_hold_the_measured_numbers(tmp_path):
    plan = tiny_plan(tmp_path)
    levels = {"level_1": 1.0, "level_2": 0.95, "level_3": 0.9, "level_4": 0.05, "level_5": 0.125,
              "easy": 0.95, "hard": 0.0875, "all": 0.605}
    _metrics(tmp_path / "eval_sft_easy", "test", levels)
    _metrics(tmp_path / "icl_easy", "val", {"level_1": 0.0})
    _metrics(tmp_path / "eval_ppo_prm", "test", {**levels, "level_4": 0.1})
    rerank = tmp_path / "report" / "rerank"
    rerank.mkdir(parents=True)
    rows = [{"method": m, "n": n, "subset": "hard", "accuracy": a, "problems": 40}
            for m, n, a in [("majority", 1, 0.072), ("majority", 8, 0.05), ("weighted:prm", 8, 0.1)]]
    (rerank / "report.json").write_text(json.dumps({"ns": [1, 8], "methods": ["majority", "weighted:prm"],
                                                    "rows": rows, "problems": {"hard": 40}, "n_max": 8}))
    for stage in plan.stages[:2]:
        done_marker(plan, stage).parent.mkdir(parents=True, exist_ok=True)
        done_marker(plan, stage).write_text('{"seconds": 12.4}')
    text = write_report(plan).read_text()
    assert "| SFT on easy levels (Easy-to-Hard) | 100.0% | 95.0% | 90.0% | 5.0% | 12.5% | 95.0% | 8.8% | 60.5% |" in text
    assert "| ICL, exemplars from easy levels | 0.0% | - | - | - | - | - | - | - |" in text
    assert "| PPO, easy outcome + PRM process reward | 100.0% | 95.0% | 90.0% | 10.0% |" in text
    assert "| SFT on all levels (Full) | - |" in text  # not run: no number invented
    assert "| majority | 7.2% | 5.0% |" in text and "| weighted:prm | - | 10.0% |" in text
    assert "| icl_full | in-context learning, exemplars from levels [1,2,3,4,5] | 12 |" in text
    assert "| eval_ppo_outcome | greedy accuracy of PPO (outcome) by level | not run |" in text
    assert (tmp_path / "report" / "generators.png").stat().st_size > 0
