"""PRM800K converters: raw records and the stepwise-critique layout -> step-labelled solutions.

Expected numbers for the shared raw file were counted by hand from a dump of each record's per-step
ratings, chosen_completion and human_completion (listed next to each test). The stepwise numbers come from
SOURCES.md (rating counts) plus a one-off grouping script for the duplicates (noted where used).
"""

from __future__ import annotations

import copy
import json

import pytest

from e2h.data.errors import DataError
from e2h.data.files import read_jsonl
from e2h.data.prm800k import (
    convert_raw,
    convert_raw_with_counts,
    convert_stepwise_critique,
    convert_stepwise_critique_with_counts,
    levels_by_problem,
    rating_to_label,
    read_raw,
)
from e2h.data.records import Problem, normalize_problem_text

RAW = "prm800k/raw_schema_examples.jsonl"
STEPWISE = "prm800k/phase1_test.stepwise_critique.jsonl"
MATH500 = "math/test.jsonl"


@pytest.fixture(scope="module")
def raw_records(shared_file) -> list[dict]:
    return list(read_raw(shared_file(RAW)))


@pytest.fixture(scope="module")
def stepwise_rows(shared_file) -> list[dict]:
    # 5,449 rows read in well under a second.
    return [row for _, row in read_jsonl(shared_file(STEPWISE))]


# --------------------------------------------------------------------------- hand-built records


def completion(text: str, rating: object) -> dict:
    return {"text": text, "rating": rating, "flagged": None}


def step(completions: list[dict], chosen: int | None = None, human: str | None = None) -> dict:
    return {
        "completions": completions,
        "chosen_completion": chosen,
        "human_completion": None if human is None else {"text": human, "rating": None, "source": "human"},
    }


def record(problem: str, steps: list[dict], answer: str = "2") -> dict:
    return {
        "labeler": "x",
        "question": {"problem": problem, "ground_truth_answer": answer},
        "label": {"steps": steps, "total_time": 1, "finish_reason": "found_error"},
    }


# Step 0: the chosen completion (index 1) is followed, even though it was rated -1.
# Step 1: no chosen completion -> the human completion joins the prefix.
# Step 2: neither -> this step's rated completions are still examples, then the walk stops; "c1" is unrated.
# Step 3: never reached.
TOY = record(
    "What is 1+1?",
    [
        step([completion("a0", 1), completion("a1", -1)], chosen=1),
        step([completion("b0", -1)], human="B by a human"),
        step([completion("c0", 0), completion("c1", None)]),
        step([completion("d0", 1)], chosen=0),
    ],
)


def pairs(examples) -> list[tuple[tuple[str, ...], tuple[int | None, ...]]]:
    return [(e.steps, e.labels) for e in examples]


def test_toy_record_follows_chosen_then_human_then_stops():
    examples, counts = convert_raw_with_counts([TOY])
    assert pairs(examples) == [
        (("a0",), (1,)),
        (("a1",), (0,)),
        (("a1", "b0"), (None, 0)),
        (("a1", "B by a human", "c0"), (None, None, 1)),
    ]
    assert [e.unique_id for e in examples] == ["prm800k/0/0/0", "prm800k/0/0/1", "prm800k/0/1/0", "prm800k/0/2/0"]
    assert {(e.answer, e.source, e.level, e.outcome) for e in examples} == {("2", "prm800k", None, None)}
    assert (counts.examples, counts.positive, counts.negative, counts.unrated) == (4, 2, 2, 1)


def test_chosen_completion_wins_over_human_completion():
    both = step([completion("x0", 1), completion("x1", 1)], chosen=0, human="H")
    rec = record("p", [both, step([completion("y", -1)])])
    assert pairs(convert_raw([rec]))[-1] == (("x0", "y"), (None, 0))


def test_stop_at_first_step_leaves_later_steps_out():
    rec = record("p", [step([completion("x", -1)]), step([completion("y", 1)], chosen=0)])
    assert pairs(convert_raw([rec])) == [(("x",), (0,))]


@pytest.mark.parametrize(
    ("neutral", "last"), [("positive", [(None, None, 1)]), ("negative", [(None, None, 0)]), ("drop", [])]
)
def test_neutral_policy_on_toy(neutral, last):
    # Only step 2's "c0" is neutral; the three other examples never change.
    same = [(("a0",), (1,)), (("a1",), (0,)), (("a1", "b0"), (None, 0))]
    expected = same + [(("a1", "B by a human", "c0"), labels) for labels in last]
    assert pairs(convert_raw([TOY], neutral=neutral)) == expected


def test_rating_to_label_and_bad_policy():
    assert [rating_to_label(r) for r in (-1, 0, 1)] == [0, 1, 1]
    assert [rating_to_label(r, "negative") for r in (-1, 0, 1)] == [0, 0, 1]
    assert rating_to_label(0, "drop") is None
    with pytest.raises(ValueError, match="neutral"):
        convert_raw([TOY], neutral="maybe")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- errors


def test_missing_label_names_where_record_and_field():
    bad = {k: v for k, v in TOY.items() if k != "label"}
    with pytest.raises(DataError, match=r"^x\.jsonl: record 2: missing field 'label'"):
        convert_raw([TOY, bad], where="x.jsonl")


def test_missing_question_and_steps_are_errors():
    with pytest.raises(DataError, match=r"record 1: missing field 'question'"):
        convert_raw([{"label": TOY["label"]}])
    with pytest.raises(DataError, match=r"record 1: label: missing field 'steps'"):
        convert_raw([{"question": TOY["question"], "label": {}}])


@pytest.mark.parametrize("rating", ["good", True, 2, 1.0])
def test_bad_rating_names_the_completion(rating):
    rec = record("p", [step([completion("ok", 1)], chosen=0), step([completion("x", 1), completion("y", rating)])])
    where = r"prm800k: record 1: label\.steps\[1\]\.completions\[1\]\.rating: must be -1, 0, 1 or null"
    with pytest.raises(DataError, match=where):
        convert_raw([rec])


def test_chosen_completion_out_of_range_is_an_error():
    rec = record("p", [step([completion("x", 1)], chosen=3)])
    with pytest.raises(DataError, match=r"label\.steps\[0\]\.chosen_completion"):
        convert_raw([rec])


# --------------------------------------------------------------------------- the shared raw file

# Per-step ratings of the 4 records (step: ratings -> chosen / human):
#   record 0 (phase 1, MATH500 level 2): [1], [-1]*5 (human), [1], [1], [1], [0,1,1,1,1] (chosen 4)
#            -> 1+5+1+1+1+5 = 14 examples; ratings -1:5, 0:1, +1:8
#   record 1 (phase 1, level 4): 30 steps, the last with 7 null ratings and neither chosen nor human
#            -> 107 examples; ratings -1:51, 0:35, +1:21 (7 unrated)
#   record 2 (phase 1, level 2): 7 (human) + 7 (chosen 2) + 1 + 1 + 4 (human) + 7 (chosen 6) = 27;
#            ratings -1:11, 0:8, +1:8
#   record 3 (phase 2, level 5): six steps of one completion ([1],[0],[1],[1],[1],[1], chosen 0) then
#            [-1,1,1,1] with neither chosen nor human -> 6+4 = 10; ratings -1:1, 0:1, +1:8
# Totals: 158 examples; ratings -1:68, 0:45, +1:45; 7 unrated.
PER_RECORD = [14, 107, 27, 10]


def test_examples_per_record(raw_records):
    assert len(raw_records) == 4
    assert [len(convert_raw([r])) for r in raw_records] == PER_RECORD


@pytest.mark.parametrize(
    ("neutral", "examples", "ones", "zeros", "neutral_dropped"),
    [
        ("positive", 158, 45 + 45, 68, 0),  # 0 and +1 -> 1
        ("negative", 158, 45, 68 + 45, 0),  # 0 -> 0
        ("drop", 158 - 45, 45, 68, 45),  # the 45 neutral examples are skipped
    ],
)
def test_neutral_policy_counts(raw_records, neutral, examples, ones, zeros, neutral_dropped):
    out, counts = convert_raw_with_counts(raw_records, neutral=neutral)
    assert len(out) == counts.examples == examples
    assert sum(e.labels[-1] == 1 for e in out) == counts.positive == ones
    assert sum(e.labels[-1] == 0 for e in out) == counts.negative == zeros
    assert (counts.neutral_dropped, counts.unrated, counts.inputs) == (neutral_dropped, 7, 4)


def test_labels_of_last_step_of_record_0(raw_records):
    # Record 0, step 5: ratings [0, 1, 1, 1, 1]; prefix is steps 0-4 (step 1 by a human).
    rec = raw_records[0]
    steps = rec["label"]["steps"]
    last = [e for e in convert_raw([rec]) if e.unique_id.startswith("prm800k/0/5/")]
    assert [e.labels for e in last] == [(None,) * 5 + (1,)] * 5
    negative = [e for e in convert_raw([rec], neutral="negative") if e.unique_id.startswith("prm800k/0/5/")]
    assert [e.labels[-1] for e in negative] == [0, 1, 1, 1, 1]
    assert [e.steps[-1] for e in last] == [c["text"] for c in steps[5]["completions"]]
    assert last[-1].steps[-1].endswith("# Answer\n\n29") and last[-1].answer == "29"


def test_prefix_follows_human_then_chosen_on_shared_record(raw_records):
    rec = raw_records[0]
    steps = rec["label"]["steps"]
    example = next(e for e in convert_raw([rec]) if e.unique_id == "prm800k/0/2/0")
    # Step 0's chosen completion (index 0), then step 1's human completion (all five candidates were -1).
    assert example.steps[:2] == (steps[0]["completions"][0]["text"], steps[1]["human_completion"]["text"])
    assert example.steps[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
    # Record 1, step 7 chose completion 1 (rated +1) out of seven; step 8's example carries it.
    rec1 = raw_records[1]
    ex8 = next(e for e in convert_raw([rec1]) if e.unique_id == "prm800k/0/8/0")
    assert ex8.steps[7] == rec1["label"]["steps"][7]["completions"][1]["text"]
    assert len(ex8.steps) == 9


def test_level_filter_with_synthetic_map(raw_records):
    problems = [r["question"]["problem"] for r in raw_records]
    # Record 0 is "level 1", record 1 "level 4"; records 2 and 3 are not in the map, so the official rule keeps them.
    levels_of = {normalize_problem_text(problems[0]): 1, normalize_problem_text(problems[1]): 4}
    out, counts = convert_raw_with_counts(raw_records, levels_of=levels_of, levels=[1, 2, 3])
    assert counts.examples == 14 + 27 + 10 and counts.level_dropped == 107
    assert {e.level for e in out if e.problem == problems[0]} == {1}
    assert {e.level for e in out if e.problem == problems[2]} == {None}
    # A problem known with level None is not in any level set: dropped.
    unknown_level = {normalize_problem_text(problems[3]): None}
    _, counts = convert_raw_with_counts(raw_records, levels_of=unknown_level, levels=[1, 2, 3, 4, 5])
    assert (counts.examples, counts.level_dropped) == (148, 10)
    with pytest.raises(ValueError, match="levels_of"):
        convert_raw(raw_records, levels=[1])


def test_exclusion_matches_normalised_text(raw_records):
    problem = raw_records[2]["question"]["problem"]
    spaced = "  " + problem.replace(" ", "  \n") + "\n"
    out, counts = convert_raw_with_counts(raw_records, exclude_problems=[spaced])
    assert (len(out), counts.held_out_dropped) == (158 - 27, 27)
    assert problem not in {e.problem for e in out}


def test_duplicates_are_dropped(raw_records):
    out, counts = convert_raw_with_counts(raw_records + [copy.deepcopy(raw_records[0])])
    assert (len(out), counts.duplicates_dropped) == (158, 14)
    # The kept copy is the first one.
    assert all(e.unique_id.split("/")[1] != "4" for e in out)


def test_all_shared_records_are_math500(raw_records, shared_file):
    math500 = [json.loads(line)["problem"] for line in shared_file(MATH500).open()]
    assert convert_raw(raw_records, exclude_problems=math500) == []


# --------------------------------------------------------------------------- levels helpers


def test_levels_by_problem():
    ps = [
        Problem("Find  x.\n", "s", "1", 3, "Algebra", "a"),
        Problem("Find x.", "s", "1", 5, "Algebra", "b"),  # same normalised text: the first level stays
        Problem("Area?", "s", "2", None, "Geometry", "c"),
    ]
    assert levels_by_problem(ps) == {"Find x.": 3, "Area?": None}


# --------------------------------------------------------------------------- stepwise layout

# SOURCES.md: 5,449 rows, ratings 1:2245, -1:1970, 0:867, null:367 -> 5,082 rated rows. Grouping the rated
# rows by (instruction, responses, step text with its answer, label) with a separate script gave 4,603
# distinct examples (479 repeats) under both positive and negative, 3,784 (431 repeats) of the 4,215
# non-neutral rows under drop; distinct label-1 examples: 2,905 (positive), 2,086 (negative, drop).
@pytest.mark.parametrize(
    ("neutral", "examples", "ones", "dups", "neutral_dropped"),
    [("positive", 4603, 2905, 479, 0), ("negative", 4603, 2086, 479, 0), ("drop", 3784, 2086, 431, 867)],
)
def test_stepwise_counts(stepwise_rows, neutral, examples, ones, dups, neutral_dropped):
    out, counts = convert_stepwise_critique_with_counts(stepwise_rows, neutral=neutral)
    assert (counts.inputs, counts.unrated, counts.neutral_dropped) == (5449, 367, neutral_dropped)
    assert (len(out), counts.positive, counts.duplicates_dropped) == (examples, ones, dups)
    assert counts.examples + counts.duplicates_dropped + counts.neutral_dropped == 5449 - 367


def test_stepwise_matches_raw_for_the_same_labelling(stepwise_rows, raw_records):
    # Rows 0-14 of the stepwise file are raw record 0 denormalised (15 rows, row 6 the human step).
    assert all(r["instruction"] == raw_records[0]["question"]["problem"] for r in stepwise_rows[:15])
    assert stepwise_rows[6]["rating"] is None and stepwise_rows[6]["is_human_response"] is True
    stepwise = convert_stepwise_critique(stepwise_rows[:15])
    raw = convert_raw(raw_records[:1])
    # Same steps and labels, in the same order: the split-off "# Answer" block is put back.
    assert pairs(stepwise) == pairs(raw)
    assert stepwise[-1].steps[-1] == "That means a pencil costs 29 cents.\n\n# Answer\n\n29"
    assert stepwise[0].unique_id == "prm800k-stepwise/0" and stepwise[0].source == "prm800k-stepwise"
    assert stepwise[0].answer is None


def test_stepwise_bad_rows():
    row = {"instruction": "p", "responses": ["a"], "next_response": "b", "answer": None, "rating": "good"}
    with pytest.raises(DataError, match=r"^w: row 1: field 'rating': must be -1, 0, 1 or null"):
        convert_stepwise_critique([row], where="w")
    with pytest.raises(DataError, match=r"row 1: responses\[0\] must be a string"):
        convert_stepwise_critique([{**row, "rating": 1, "responses": [3]}])
    with pytest.raises(DataError, match=r"row 2: missing field 'next_response'"):
        convert_stepwise_critique([{**row, "rating": 1}, {"instruction": "p", "responses": []}])


# --------------------------------------------------------------------------- reading and the CLI


def test_read_raw_accepts_folder_and_list(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps({"n": 2}) + "\n\n" + json.dumps({"n": 3}) + "\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({"n": 1}) + "\n")
    assert [r["n"] for r in read_raw(tmp_path)] == [1, 2, 3]
    assert [r["n"] for r in read_raw([tmp_path / "b.jsonl", tmp_path / "a.jsonl"])] == [2, 3, 1]
    (tmp_path / "c.jsonl").write_text("{oops\n")
    with pytest.raises(DataError, match=r"c\.jsonl:1"):
        list(read_raw(tmp_path))
