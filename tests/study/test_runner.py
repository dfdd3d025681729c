"""The study's runner: finished stages are skipped, a stage runs after its inputs, independent ones side by side,
and a failed stage stops the study naming its log."""

import threading
import time

import pytest

from e2h.study import runner
from e2h.study.plan import Plan, done_marker


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
