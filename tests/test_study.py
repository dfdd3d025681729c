"""The study pipeline (bin/study.py): its plan uses shipped configs in dependency order, a finished stage is
skipped and a cut-off training stage resumes, and the report turns the stages' outputs into tables."""

import json
import threading
import time
from pathlib import Path

import pytest

from e2h.cli.study import main as study_main
from e2h.study import runner
from e2h.study.plan import PROFILES, Plan, command, done_marker, math_plan, tiny_plan
from e2h.study.report import write_report


def _configs(plan: Plan) -> list[Path]:
    return [Path(s.args[i + 1]) for s in plan.stages for i, a in enumerate(s.args) if a == "--config"]


@pytest.mark.parametrize("make", [lambda out: tiny_plan(out), lambda out: math_plan(out, "MODEL", "/data/prm800k.jsonl")],
                         ids=["tiny", "math"])
def test_plan_uses_shipped_configs_in_dependency_order(make, tmp_path):
    plan = make(tmp_path / "study")
    configs = _configs(plan)
    assert configs and all(c.exists() for c in configs), [c for c in configs if not c.exists()]
    seen: set[str] = set()
    for s in plan.stages:
        assert set(s.after) <= seen, f"{s.name} runs before its inputs"
        seen.add(s.name)
    assert len(seen) == len(plan.stages)  # names are unique
    names = {s.name for s in plan.stages}
    # the paper's comparisons, each a stage
    assert {"icl_full", "icl_hard", "icl_easy", "sft_easy", "sft_full", "sample", "orm", "prm", "oprm",
            "rerank", "ppo_prm", "ppo_outcome", "eval_ppo_prm", "eval_ppo_outcome"} <= names
    # sampling and PPO start from the Easy-to-Hard generator, never from the full one; so do the MATH
    # reward models (the tiny ones train from scratch)
    easy_hf = plan.path("main", f"runs/{plan.profile}/{PROFILES[plan.profile]['sft_easy_dir']}/hf")
    full_hf = plan.path("full", f"runs/{plan.profile}/{PROFILES[plan.profile]['sft_full_dir']}/hf")
    rms = ("orm", "prm", "oprm") if plan.profile == "math" else ()
    for name in ("ppo_prm", "ppo_outcome", "sample", *rms):
        (stage,) = [s for s in plan.stages if s.name == name]
        assert easy_hf in stage.args and "sft_easy" in stage.after
    assert not any(full_hf in s.args for s in plan.stages if s.name != "eval_sft_full")


def test_a_cut_off_training_stage_resumes_from_its_last_checkpoint(tmp_path):
    plan = tiny_plan(tmp_path)
    (sft,) = [s for s in plan.stages if s.name == "sft_easy"]
    assert "--ckpt_path" not in command(sft, plan)
    last = tmp_path / "main" / sft.checkpoints / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert command(sft, plan)[-2:] == ["--ckpt_path", str(last)]


def test_run_skips_finished_stages_and_respects_dependencies(tmp_path, monkeypatch):
    plan = Plan("tiny", tmp_path)
    plan.add("a", "w", ["fit"])
    plan.add("b", "w", ["fit"])
    plan.add("c", "w", ["fit"], after=["a", "b"])
    plan.add("d", "w", ["fit"], after=["c"])
    done_marker(plan, plan.stages[0]).parent.mkdir(parents=True)
    done_marker(plan, plan.stages[0]).write_text('{"seconds": 1}')  # "a" finished in an earlier run
    events: list[str] = []
    lock = threading.Lock()
    active, peak = [0], [0]

    def fake_run_stage(stage, plan, threads):
        with lock:
            events.append(f"start {stage.name}")
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
            events.append(f"end {stage.name}")
        done_marker(plan, stage).write_text('{"seconds": 0.05}')
        return 0.05

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    runner.run(plan, jobs=2)
    assert "start a" not in events
    assert events.index("end b") < events.index("start c") < events.index("end c") < events.index("start d")
    events.clear()
    runner.run(plan, jobs=2)  # everything done: nothing runs again
    assert events == []


def test_a_failed_stage_stops_the_study_naming_its_log(tmp_path, monkeypatch):
    plan = Plan("tiny", tmp_path)
    plan.add("broken", "w", ["fit", "--config", "/nonexistent.yaml"])
    plan.add("after", "w", ["fit"], after=["broken"])
    with pytest.raises(RuntimeError, match=r"stage broken failed .*logs/broken.log"):
        runner.run(plan)
    assert not done_marker(plan, plan.stages[0]).exists()
    assert "nonexistent.yaml" in (tmp_path / "logs" / "broken.log").read_text()


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


@pytest.mark.timeout(1800)
def test_the_tiny_study_runs_end_to_end_in_smoke_mode(tmp_path):
    """Every stage of the tiny profile, each cut to a few steps (numbers meaningless), then the report:
    the commands, configs and hand-offs between stages are the real ones."""
    assert study_main(["--profile", "tiny", "--smoke", "--jobs", "2", "--out", str(tmp_path)]) == 0
    plan = tiny_plan(tmp_path)
    assert all(done_marker(plan, s).exists() for s in plan.stages)
    text = (tmp_path / "report" / "study.md").read_text()
    for row in ("ICL, exemplars from hard levels", "SFT on easy levels (Easy-to-Hard)", "PPO, final-answer reward only"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        assert "%" in line  # measured, not "-"
    assert "| weighted:prm |" in text and "| best_of_n:oprm |" in text
    report = json.loads((tmp_path / "report" / "rerank" / "report.json").read_text())
    assert set(report["scorers"]) == {"orm", "prm", "oprm"}
    # a second run finds everything done and only rewrites the report
    assert study_main(["--profile", "tiny", "--smoke", "--out", str(tmp_path)]) == 0


def test_quick_runs_the_generator_side_only(tmp_path, monkeypatch):
    ran: list[str] = []

    def fake_run_stage(stage, plan, threads):
        ran.append(stage.name)
        done_marker(plan, stage).parent.mkdir(parents=True, exist_ok=True)
        done_marker(plan, stage).write_text('{"seconds": 1}')
        return 1.0

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    assert study_main(["--profile", "tiny", "--quick", "--out", str(tmp_path)]) == 0
    assert ran == ["sft_easy", "eval_sft_easy", "sample"]
    assert "(the sampling and re-ranking stages have not run)" in (tmp_path / "report" / "study.md").read_text()
