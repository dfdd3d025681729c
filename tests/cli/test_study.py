"""The study command (bin/study.py): the tiny study end to end in smoke mode, and --quick running the generator side
only."""

import json

import pytest

from e2h.cli.study import main as study_main
from e2h.study import runner
from e2h.study.plan import done_marker, tiny_plan


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_tiny_study_runs_end_to_end_in_smoke_mode(tmp_path):
    """Every stage of the tiny profile, each cut to a few steps (numbers meaningless), then the report:
    the commands, configs and hand-offs between stages are the real ones."""
    assert study_main(["--profile", "tiny", "--smoke", "--jobs", "2", "--out", str(tmp_path)]) == 0
    plan = tiny_plan(tmp_path)
    assert all(done_marker(plan, s).exists() != s.extension for s in plan.stages)  # extensions only when asked
    # the extensions (GRPO, ReST-EM and iterative DPO rounds) build on the finished study
    assert study_main(["--profile", "tiny", "--smoke", "--jobs", "2", "--extensions", "--out", str(tmp_path)]) == 0
    assert all(done_marker(plan, s).exists() for s in plan.stages)
    text = (tmp_path / "report" / "study.md").read_text()
    for row in ("SFT on easy levels (Easy-to-Hard)", "PPO, final-answer reward only (easy answers)",
                "PPO, final-answer reward on all levels (full supervision)", "GRPO, easy outcome + PRM process reward",
                "ReST-EM round 2 (easy answers, PRM on hard)", "Iterative DPO round 2 (easy answers + PRM, PRM on hard)"):
        line = next(line for line in text.splitlines() if line.startswith(f"| {row} |"))
        assert "%" in line  # measured, not "-"
    assert "| weighted:prm |" in text and "| best_of_n:oprm |" in text
    assert "ICL, exemplars" not in text  # no ICL rows from a random model
    study = json.loads((tmp_path / "report" / "study.json").read_text())
    assert study["chance"] == 0.1 and set(study["evaluators"]) == {"orm", "prm", "oprm"}
    assert study["samples"]["all"]["clip_rate"] is not None
    assert all(seconds is not None for seconds in study["stage_seconds"].values())
    report = json.loads((tmp_path / "report" / "rerank" / "report.json").read_text())
    assert set(report["scorers"]) == {"orm", "prm", "oprm"}
    # a second run finds everything done and only rewrites the report
    assert study_main(["--profile", "tiny", "--smoke", "--out", str(tmp_path)]) == 0


@pytest.fixture
def ran(monkeypatch) -> list[str]:
    """The names of the stages the study runs, in order; each stage only marked done, nothing run."""
    names: list[str] = []

    def fake_run_stage(stage, plan, threads):
        names.append(stage.name)
        done_marker(plan, stage).parent.mkdir(parents=True, exist_ok=True)
        done_marker(plan, stage).write_text('{"seconds": 1}')
        return 1.0

    monkeypatch.setattr(runner, "run_stage", fake_run_stage)
    return names


def test_quick_runs_the_generator_side_only(tmp_path, ran):
    assert study_main(["--profile", "tiny", "--quick", "--out", str(tmp_path)]) == 0
    assert ran == ["sft_easy", "eval_sft_easy", "sample"]
    assert "(the sampling and re-ranking stages have not run)" in (tmp_path / "report" / "study.md").read_text()


def test_extensions_run_only_when_asked_each_round_after_the_last(tmp_path, ran):
    assert study_main(["--profile", "tiny", "--out", str(tmp_path)]) == 0
    plan = tiny_plan(tmp_path)
    extensions = [s.name for s in plan.stages if s.extension]
    assert ran and not set(ran) & set(extensions) and len(ran) == len(plan.stages) - len(extensions)
    ran.clear()
    assert study_main(["--profile", "tiny", "--extensions", "--out", str(tmp_path)]) == 0
    assert sorted(ran) == sorted(extensions)
    order = {name: i for i, name in enumerate(ran)}
    # round 2 samples with round 1's policy; each round's training waits for its selection of samples
    assert order["rest_em_1"] < order["rest_em_2_self_sample"] < order["rest_em_2_data"] < order["rest_em_2"]
    assert order["dpo_1"] < order["dpo_2_self_sample"] < order["dpo_2_pairs"] < order["dpo_2"]
    assert {"grpo", "eval_grpo", "self_1_sample", "self_1_score"} <= set(ran)


def test_extensions_are_a_tiny_profile_option(tmp_path, monkeypatch, ran):
    monkeypatch.setattr(runner, "make_links", lambda plan: None)
    with pytest.raises(SystemExit):
        study_main(["--profile", "math", "--micro", "--extensions", "--out", str(tmp_path)])
    assert ran == []


def test_quick_micro_builds_the_micro_inputs_first(tmp_path, monkeypatch, ran):
    monkeypatch.setattr(runner, "make_links", lambda plan: None)
    assert study_main(["--profile", "math", "--micro", "--quick", "--out", str(tmp_path)]) == 0
    assert sorted(ran) == sorted(["micro_model", "micro_prm800k", "sft_easy", "eval_sft_easy", "sample"])


def test_dry_run_prints_the_plan_and_changes_nothing_on_disk(tmp_path, capsys):
    out = tmp_path / "study"
    assert study_main(["--profile", "math", "--micro", "--dry-run", "--out", str(out)]) == 0
    assert study_main(["--profile", "math", "--model", "M", "--prm800k", "P", "--dry-run", "--out", str(out)]) == 0
    assert study_main(["--profile", "tiny", "--dry-run", "--out", str(out)]) == 0
    assert not out.exists() and list(tmp_path.iterdir()) == []
    printed = capsys.readouterr().out
    assert "# micro_model:" in printed and "-m e2h.cli.study micro model" in printed
    assert "# eval_ppo_full:" in printed


def test_micro_is_a_math_option(tmp_path):
    with pytest.raises(SystemExit):
        study_main(["--profile", "tiny", "--micro", "--dry-run", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):  # the full math profile needs the user's model and PRM800K file
        study_main(["--profile", "math", "--dry-run", "--out", str(tmp_path)])
