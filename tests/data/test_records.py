import json
import logging
import re

import pytest

from e2h.data.errors import DataError
from e2h.data.records import (
    Problem,
    difficulty_group,
    exclude_held_out,
    filter_levels,
    level_counts,
    load_problems,
    parse_level,
)

HUB_ROW = {
    "problem": "What is $1+1$?",
    "solution": "We add: $1+1=\\boxed{2}$.",
    "type": "Prealgebra",
    "level": "Level 2",
}
SPLIT_ROW = {
    "problem": "What is $2+2$?",
    "solution": "So $\\boxed{4}$.",
    "answer": "4",
    "subject": "Prealgebra",
    "level": 1,
    "unique_id": "train/prealgebra/1.json",
}


def test_math_train_level_counts_match_design(shared_file):
    path = shared_file("math/train.jsonl")
    problems = load_problems(str(path))
    assert len(problems) == 12000
    assert level_counts(problems) == {1: 958, 2: 2152, 3: 2618, 4: 2776, 5: 3494, None: 2}


def test_math500_never_leaks_into_training(shared_file):
    train = load_problems(str(shared_file("math/train.jsonl")))
    test = load_problems(str(shared_file("math/test.jsonl")))
    assert len(test) == 500
    # The shared train split is MATH minus MATH500: nothing to remove, and every test problem removed
    # when the test set is mixed in.
    assert len(exclude_held_out(train, test)) == len(train)
    assert exclude_held_out(train + test[:7], test) == train


def test_hub_schema_and_split_schema_normalise_to_one_record(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "mixed.jsonl", [HUB_ROW, dict(SPLIT_ROW, level=1)])
    hub, split = load_problems(str(path))
    assert hub.subject == "Prealgebra" and hub.level == 2 and hub.answer == "2"
    assert hub.unique_id.endswith("record 0")
    assert split == Problem(
        "What is $2+2$?", "So $\\boxed{4}$.", "4", 1, "Prealgebra", "train/prealgebra/1.json"
    )


def test_parquet_and_json_sources(tmp_path):
    import datasets

    datasets.Dataset.from_list([SPLIT_ROW]).to_parquet(str(tmp_path / "p.parquet"))
    (tmp_path / "p.json").write_text(json.dumps([SPLIT_ROW]))
    assert load_problems(str(tmp_path / "p.parquet"))[0].answer == "4"
    assert load_problems(str(tmp_path / "p.json"))[0].level == 1


@pytest.mark.parametrize(
    "value, level", [(3, 3), ("Level 3", 3), ("level 5", 5), ("4", 4), ("Level ?", None), (None, None), ("", None)]
)
def test_parse_level(value, level):
    assert parse_level(value) == level


@pytest.mark.parametrize("value", [7, -1, 0, 3.5, "hard", "Level 9", True])
def test_a_level_that_is_not_one_is_an_error_naming_where(value):
    with pytest.raises(DataError, match=rf"f\.jsonl:4: level {re.escape(repr(value))} is not a level"):
        parse_level(value, "f.jsonl:4")


def test_a_file_with_a_bad_level_names_the_record(tmp_path):
    path = tmp_path / "levels.jsonl"
    path.write_text("\n".join(json.dumps({**SPLIT_ROW, "level": lv}) for lv in ("Level 2", "hard")) + "\n")
    with pytest.raises(DataError, match=r"levels\.jsonl: record 2: level 'hard' is not a level"):
        load_problems(str(path))


def test_unknown_levels_are_counted_when_a_filter_drops_them(caplog):
    from e2h.data.records import Problem, filter_levels

    problems = [Problem("p", "s", "1", level, "", str(i)) for i, level in enumerate([1, None, 2, None])]
    with caplog.at_level(logging.WARNING, logger="e2h"):
        assert [p.level for p in filter_levels(problems, [1, 2])] == [1, 2]
    assert "excluded 2 problem(s) of unknown level" in caplog.text


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(SPLIT_ROW) + "\n" + '{"problem": "x", "solution": \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2:\d+: malformed JSON"):
        load_problems(str(path))


def test_missing_field_names_field_and_record(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "nofield.jsonl", [SPLIT_ROW, {"solution": "no problem text", "answer": "1"}])
    with pytest.raises(DataError, match=r"nofield\.jsonl: record 2: missing required field 'problem'"):
        load_problems(str(path))


def test_missing_answer_and_no_boxed_is_an_error(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "noanswer.jsonl", [{"problem": "p", "solution": "no final answer here"}])
    with pytest.raises(DataError, match="record 1: no 'answer' field"):
        load_problems(str(path))
    # a reference's answer is the one it states: the last formula of its text is not taken for it
    path = write_jsonl(tmp_path / "unstated.jsonl", [{"problem": "p", "solution": "We get $x = 5$, so $y = 7$."}])
    with pytest.raises(DataError, match="record 1: no 'answer' field"):
        load_problems(str(path))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_problems(str(tmp_path / "absent.jsonl"))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        load_problems(str(tmp_path / "data.csv"))


def _problems(levels):
    return [Problem(f"p{i}", "s", "1", lvl, "x", f"id{i}") for i, lvl in enumerate(levels)]


def test_level_filter_excludes_unknown_levels_and_logs_them(caplog):
    problems = _problems([1, 2, None, 4, None, 5])
    with caplog.at_level(logging.INFO, logger="e2h.data.records"):
        easy = filter_levels(problems, [1, 2, 3])
    assert [p.level for p in easy] == [1, 2]
    assert "excluded 2 problem(s) of unknown level" in caplog.text
    assert filter_levels(problems, None) == problems


def test_level_filter_that_keeps_nothing_names_existing_levels():
    with pytest.raises(DataError, match=r"keeps no problem; levels present.*\{4: 1, 5: 2, None: 1\}"):
        filter_levels(_problems([4, 5, 5, None]), [1, 2, 3])


def test_held_out_exclusion_by_id_and_by_text():
    train = _problems([1, 2, 3])
    same_id = Problem("other text", "s", "1", 1, "x", "id0")
    same_text = Problem("p1", "s", "1", 1, "x", "elsewhere")  # whitespace differences do not hide a leak
    reformatted = Problem("  p2 ", "s", "1", 1, "x", "elsewhere2")
    assert exclude_held_out(train, [same_id]) == train[1:]
    assert exclude_held_out(train, [same_text, reformatted]) == train[:1]


def test_difficulty_groups():
    assert [difficulty_group(lvl) for lvl in (1, 3, 4, 5, None)] == ["easy", "easy", "hard", "hard", "unknown"]


def test_a_missing_local_file_is_named_at_once_not_looked_up_on_the_hub(tmp_path):
    with pytest.raises(DataError, match=r"data source .*train\.jsnl: no such file or folder"):
        load_problems(str(tmp_path / "train.jsnl"))  # a typo'd extension


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_an_empty_file_says_so(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=r"empty\.jsonl: the file holds no records"):
        load_problems(str(path))


def test_paths_and_hub_ids_are_told_apart():
    from e2h.data.files import looks_like_path

    assert all(map(looks_like_path, ["runs/tiny/sft/hf", "./model", "/abs/x", "train.jsnl", "data.parquet"]))
    assert not any(map(looks_like_path, ["gpt2", "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "hendrycks/math"]))
