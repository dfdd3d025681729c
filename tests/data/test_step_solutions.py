import json

import pytest

from e2h.data.errors import DataError
from e2h.data.step_solutions import (
    StepSolution,
    completion_steps,
    read_step_solutions,
    split_steps,
    strip_answer_section,
    write_step_solutions,
)


def test_split_steps_keeps_the_answer_section_on_the_last_step():
    text = "6+4=0 0+7\n\n0+7=7\n\n# Answer\n\n7"
    assert split_steps(text) == ["6+4=0 0+7", "0+7=7\n\n# Answer\n\n7"]
    assert "\n\n".join(split_steps(text)) == text
    assert split_steps("only one step") == ["only one step"]
    assert split_steps("a\n\nb") == ["a", "b"]
    assert strip_answer_section("0+7=7\n\n# Answer\n\n7") == "0+7=7"
    assert strip_answer_section("0+7=7") == "0+7=7"


def test_labels_must_match_steps_in_count_and_type():
    with pytest.raises(DataError, match="2 steps but 1 labels"):
        StepSolution("p", ("a", "b"), (1,), unique_id="x")
    with pytest.raises(DataError, match=r"labels\[1\] must be 0, 1 or null, got '1'"):
        StepSolution("p", ("a", "b"), (1, "1"))
    with pytest.raises(DataError, match=r"labels\[0\] must be 0, 1 or null, got 0.5"):
        StepSolution("p", ("a",), (0.5,))
    with pytest.raises(DataError, match="'outcome' must be 0, 1 or null"):
        StepSolution("p", ("a",), (1,), outcome=2)
    assert StepSolution("p", ["a", "b"], [True, None]).labels == (1, None)


def test_jsonl_round_trip_and_errors_name_file_and_line(tmp_path):
    sols = [StepSolution("p", ("a", "b"), (None, 0), outcome=0, answer="3", level=2, unique_id="u", source="s")]
    path = tmp_path / "steps.jsonl"
    write_step_solutions(sols, path)
    assert list(read_step_solutions(path)) == sols
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(sols[0].to_dict()) + "\n" + json.dumps({"problem": "p", "steps": ["a"]}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: missing required field 'labels'"):
        list(read_step_solutions(bad))
    bad.write_text(json.dumps({"problem": "p", "steps": ["a", "b"], "labels": [1]}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:1: .*2 steps but 1 labels"):
        list(read_step_solutions(bad))


def test_completion_steps_drop_blank_chunks_and_keep_the_answer_with_the_last_step():
    assert completion_steps("1+2=3 3+4\n\n\n\n3+4=7\n\n# Answer\n\n7") == ["1+2=3 3+4", "3+4=7\n\n# Answer\n\n7"]
    assert completion_steps("") == []
    assert completion_steps("   ") == []
    assert completion_steps("only") == ["only"]


def test_step_files_read_levels_in_the_documented_forms_and_refuse_others(tmp_path):
    row = {"problem": "1+2", "steps": ["1+2=3"], "labels": [1], "outcome": 1}
    path = tmp_path / "steps.jsonl"
    path.write_text("\n".join(json.dumps({**row, "level": lv}) for lv in ("Level 2", 3, None, "Level ?")) + "\n")
    assert [s.level for s in read_step_solutions(path)] == [2, 3, None, None]  # "Level 2" is level 2, not dropped
    path.write_text(json.dumps({**row, "level": 7}) + "\n")
    with pytest.raises(DataError, match=r"steps\.jsonl:1: .*level 7 is not a level"):
        list(read_step_solutions(path))


def test_a_step_record_without_problem_text_is_refused(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text(json.dumps({"problem": None, "steps": ["a"], "labels": [1]}) + "\n")
    with pytest.raises(DataError, match=r"steps\.jsonl:1: .*'problem' must be the problem's text, got None"):
        list(read_step_solutions(path))  # it would have trained on the text "None"
