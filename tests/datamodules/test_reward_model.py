"""The reward model's data: sources select levels and carry their labels, graded samples become step-labelled
solutions, bad files are errors naming file and line, solutions that do not fit are dropped whole."""


import pytest

from e2h.data.errors import DataError
from e2h.data.prompts import question_from_prompt
from e2h.data.samples import sample_solution
from e2h.datamodules import StepSource

SMALL_SYNTHETIC = {"train": 100, "test": 10}
PROMPT = "# Question\n\n1+2+4\n\n# Solution\n\n"


def test_synthetic_source_selects_levels_and_carries_both_labels(steps_data):
    dm = steps_data(train=[StepSource(split="train", levels=[2, 3], wrong_fraction=1.0, synthetic_per_level=SMALL_SYNTHETIC)])
    dm.setup("fit")
    rows = dm.encoded["train"]
    assert len(rows) == 200 and {r["level"] for r in rows} == {2, 3}
    counts = dm.label_counts["train"]
    # every solution has exactly one wrong step (labels stop after it) and a wrong final answer
    assert counts["process_0"] == 200 and counts["outcome_0"] == 200 and counts["outcome_1"] == 0


def test_samples_source_labels_outcome_from_the_grade_and_steps_exactly(tmp_path, steps_data, write_jsonl):
    few_shot = "# Question\n\n2+2+2\n\n# Solution\n\n2+2=4 4+2\n\n4+2=6\n\n# Answer\n\n6\n\n\n"
    line = {"problem_id": "synthetic/L1/train/3", "level": 1, "sample_index": 0, "prompt": few_shot + PROMPT,
            "completion": "1+2=3 3+4\n\n3+4=8\n\n# Answer\n\n8", "answer": "8", "gold": "7", "correct": False,
            "num_tokens": 20}
    assert question_from_prompt(line["prompt"]) == "1+2+4"
    solution = sample_solution(line, process_labels=True, where="x")
    assert solution.steps == ("1+2=3 3+4", "3+4=8\n\n# Answer\n\n8")
    assert solution.labels == (1, 0) and solution.outcome == 0
    assert sample_solution(line, process_labels=False, where="x").labels == (None, None)

    rows = [line, {**line, "sample_index": 1, "level": 4, "correct": True},
            {**line, "sample_index": 2, "gold": None, "correct": None}]
    path = write_jsonl(tmp_path / "samples.jsonl", rows)
    dm = steps_data(train=[StepSource(kind="samples", path=str(path), levels=[1, 2, 3])])
    dm.setup("fit")
    # level 4 filtered out, the line without gold skipped: one solution, outcome only
    assert dm.label_counts["train"] == {"process_1": 0, "process_0": 0, "outcome_1": 0, "outcome_0": 1}


def test_steps_file_with_mismatched_labels_names_file_and_line(tmp_path, steps_data, write_jsonl):
    good = {"problem": "1+2+4", "steps": ["1+2=3 3+4", "3+4=7"], "labels": [1, 1], "outcome": 1, "level": 1}
    path = write_jsonl(tmp_path / "steps.jsonl", [good, {**good, "labels": [1]}])
    dm = steps_data(train=[StepSource(kind="steps", path=str(path))])
    with pytest.raises(DataError, match=r"steps.jsonl:2: .*2 steps but 1 labels"):
        dm.setup("fit")


def test_steps_file_with_an_empty_labelled_step_names_file_and_line(tmp_path, steps_data, write_jsonl):
    good = {"problem": "1+2+4", "steps": ["1+2=3 3+4", "3+4=7"], "labels": [1, 1], "level": 1}
    path = write_jsonl(tmp_path / "steps.jsonl", [good, good, {**good, "steps": ["1+2=3 3+4", ""]}])
    dm = steps_data(train=[StepSource(kind="steps", path=str(path))])
    with pytest.raises(DataError, match=r"steps.jsonl:3: .*step 1 maps to no token"):
        dm.setup("fit")


def test_samples_errors_name_file_and_line(tmp_path, steps_data, write_jsonl):
    line = {"problem_id": "math/1", "level": 1, "sample_index": 0, "prompt": PROMPT, "completion": "x",
            "answer": "1", "gold": "1", "correct": True, "num_tokens": 1}
    missing = {k: v for k, v in line.items() if k != "gold"}
    path = write_jsonl(tmp_path / "samples.jsonl", [line, missing])
    with pytest.raises(DataError, match=r"samples.jsonl:2: .*\['gold'\]"):
        steps_data(train=[StepSource(kind="samples", path=str(path))]).setup("fit")
    path = write_jsonl(tmp_path / "samples.jsonl", [line, line])
    with pytest.raises(DataError, match=r"samples.jsonl:2: .*repeats line 1"):
        steps_data(train=[StepSource(kind="samples", path=str(path))]).setup("fit")
    path = write_jsonl(tmp_path / "samples.jsonl", [line])
    needs = r"samples.jsonl:1: process_labels needs problems of a generated benchmark \(ids synthetic/... or chains/...\)"
    with pytest.raises(DataError, match=needs):
        steps_data(train=[StepSource(kind="samples", path=str(path), process_labels=True)]).setup("fit")


def test_source_settings_are_checked_when_the_config_is_read():
    with pytest.raises(ValueError, match="needs `path`"):
        StepSource(kind="steps")
    with pytest.raises(ValueError, match="kind"):
        StepSource(kind="prm800k")
    with pytest.raises(ValueError, match="process_labels"):
        StepSource(kind="synthetic", process_labels=True)


def test_long_solutions_are_dropped_whole_not_truncated(steps_data):
    dm = steps_data(train=[StepSource(split="train", levels=[1, 5], synthetic_per_level=SMALL_SYNTHETIC)],
                         max_length=80)
    dm.setup("fit")
    # prompt (36-44 characters) + a level-5 solution (100+ characters) never fits in 80 tokens; level 1 does
    assert {r["level"] for r in dm.encoded["train"]} == {1}
    assert all(len(r["input_ids"]) <= 80 for r in dm.encoded["train"])
