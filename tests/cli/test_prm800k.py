"""`e2h data prm800k`: converts, filters and reports; bad input is an error naming file and line."""

from __future__ import annotations

import json

import pytest

from e2h.cli.prm800k import main
from e2h.data.step_solutions import read_step_solutions

RAW = "prm800k/raw_schema_examples.jsonl"
STEPWISE = "prm800k/phase1_test.stepwise_critique.jsonl"
MATH500 = "math/test.jsonl"


def raw_record(problem: str, rating: object) -> dict:
    """A raw PRM800K record of one step with one rated completion."""
    completion = {"text": "x", "rating": rating, "flagged": None}
    step = {"completions": [completion], "chosen_completion": None, "human_completion": None}
    return {"labeler": "x", "question": {"problem": problem, "ground_truth_answer": "2"},
            "label": {"steps": [step], "total_time": 1, "finish_reason": "found_error"}}


def test_main_writes_and_filters(tmp_path, capsys, shared_file):
    raw, math500 = shared_file(RAW), shared_file(MATH500)
    out = tmp_path / "out.jsonl"
    assert main(["--input", str(raw), "--out", str(out)]) == 0
    written = list(read_step_solutions(out))
    assert len(written) == 158 and sum(s.labels[-1] for s in written) == 90
    assert "wrote 158 examples" in capsys.readouterr().out
    # MATH500 gives the levels: records 0 and 2 are level 2 (14 + 27 kept), records 1 and 3 are 4 and 5.
    args = ["--input", str(raw), "--out", str(out), "--math", str(math500), "--levels", "1", "2", "3"]
    assert main(args) == 0
    written = list(read_step_solutions(out))
    assert len(written) == 41 and {s.level for s in written} == {2}
    assert "level 117" in capsys.readouterr().out
    # Held out: every shared record is a MATH500 problem.
    assert main(["--input", str(raw), "--out", str(out), "--exclude", str(math500), "--neutral", "drop"]) == 0
    assert list(read_step_solutions(out)) == []
    assert "held-out 113" in capsys.readouterr().out


def test_main_stepwise_and_errors(tmp_path, capsys, shared_file):
    out = tmp_path / "out.jsonl"
    assert main(["--input", str(shared_file(STEPWISE)), "--format", "stepwise", "--out", str(out)]) == 0
    assert sum(1 for _ in out.open()) == 4603
    bad = tmp_path / "bad.jsonl"
    good = json.dumps(raw_record("What is 1+1?", rating=1))
    broken = json.dumps(raw_record("p", rating="good"))  # not a PRM800K rating
    bad.write_text(good + "\n" + broken + "\n")
    assert main(["--input", str(bad), "--out", str(tmp_path / "none.jsonl")]) == 1
    assert f"{bad}:2: label.steps[0].completions[0].rating" in capsys.readouterr().err
    assert not (tmp_path / "none.jsonl").exists()
    with pytest.raises(SystemExit):
        main(["--input", str(bad), "--out", str(out), "--levels", "1"])
