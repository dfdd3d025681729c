"""The synthetic benchmark: exact solutions, the local step checker, labelling, generation and files."""

from __future__ import annotations

import random

import pytest

from e2h.data.files import read_jsonl
from e2h.data.prompts import STEP_SEPARATOR
from e2h.data.step_solutions import read_step_solutions
from e2h.data.synthetic import (
    answer_of,
    benchmark_splits,
    check_steps,
    corrupt_steps,
    final_answer,
    generate_problems,
    generate_step_solutions,
    label_steps,
    level_capacity,
    num_operations,
    solves,
    solve_steps,
    step_errors,
    write_benchmark,
)

EXAMPLE = "6+4+7-5+9"
EXAMPLE_STEPS = ["6+4=0 0+7-5+9", "0+7=7 7-5+9", "7-5=2 2+9", "2+9=1"]


# --- solving -------------------------------------------------------------------------------------------


def test_design_example_is_reproduced_exactly() -> None:
    assert solve_steps(EXAMPLE) == EXAMPLE_STEPS
    assert answer_of(EXAMPLE) == "1"


def test_subtraction_wraps_modulo_10() -> None:
    # 2-7 = -5 = 5 (mod 10); 5-9 = -4 = 6 (mod 10)
    assert solve_steps("2-7-9") == ["2-7=5 5-9", "5-9=6"]
    assert answer_of("2-7-9") == "6"


@pytest.mark.parametrize("bad", ["", "7", "6+", "12+3", "6*4", "6 + 4", "+6+4"])
def test_solve_rejects_non_problems(bad: str) -> None:
    with pytest.raises(ValueError, match="not a synthetic problem"):
        solve_steps(bad)


def test_level_capacity() -> None:
    assert level_capacity(1) == 4000  # 10^3 operands x 2^2 operators
    assert level_capacity(2) == 80000
    with pytest.raises(ValueError, match="level"):
        level_capacity(0)


# --- checking ------------------------------------------------------------------------------------------


def test_check_correct_solution() -> None:
    assert check_steps(EXAMPLE, EXAMPLE_STEPS) == [1, 1, 1, 1]


def test_check_wrong_result_then_consistent_continuation() -> None:
    # 6+4 written as 1; the rest is correct arithmetic from the written 1: 1+7=8, 8-5=3, 3+9=2.
    steps = ["6+4=1 1+7-5+9", "1+7=8 8-5+9", "8-5=3 3+9", "3+9=2"]
    assert check_steps(EXAMPLE, steps) == [0, 1, 1, 1]
    assert label_steps(EXAMPLE, steps) == ([0, None, None, None], 0)


def test_check_wrong_restatement() -> None:
    # Right result, but the last operand 9 is restated as 8; later steps continue from the written text.
    steps = ["6+4=0 0+7-5+8", "0+7=7 7-5+8", "7-5=2 2+8", "2+8=0"]
    assert check_steps(EXAMPLE, steps) == [0, 1, 1, 1]
    # An operand dropped from the restatement (the +7 is lost): 0-5=5, 5+9=4.
    dropped = ["6+4=0 0-5+9", "0-5=5 5+9", "5+9=4"]
    assert check_steps(EXAMPLE, dropped) == [0, 1, 1]
    assert label_steps(EXAMPLE, dropped) == ([0, None, None], 0)


def test_check_wrong_operands_with_matching_restatement() -> None:
    # After "0+7-5+9" the step "3+4=7 7-5+9" has right arithmetic and a restatement that matches the
    # remainder with its first operation replaced by 7, but it did not do the remainder's operation.
    assert check_steps(EXAMPLE, ["6+4=0 0+7-5+9", "3+4=7 7-5+9"]) == [1, 0]


def test_step_errors_name_what_went_wrong() -> None:
    # a wrong result, a miscopied operation, a wrong restatement, a non-step, and a step after the end
    assert step_errors(EXAMPLE, ["6+4=1 1+7-5+9", "1+7=8 8-5+9", "8-5=3 3+9", "3+9=2"]) == ["result", None, None, None]
    assert step_errors(EXAMPLE, ["6+4=0 0+7-5+9", "3+4=7 7-5+9"]) == [None, "operation"]
    assert step_errors(EXAMPLE, ["6+4=0 0+7-5+8"]) == ["restatement"]
    assert step_errors(EXAMPLE, ["6 + 4 = 0"]) == ["format"]
    assert step_errors("2+9", ["2+9=1", "1+1=2"]) == [None, "format"]
    assert check_steps(EXAMPLE, ["6+4=0 0+7-5+9", "3+4=7 7-5+9"]) == [1, 0]  # the checker is the same judgement


def test_solves_needs_every_step_right_not_only_the_answer() -> None:
    answer = "\n\n# Answer\n\n1"
    assert solves(EXAMPLE, STEP_SEPARATOR.join(EXAMPLE_STEPS) + answer)
    # two slips that cancel: the answer is right (1) by luck, the solution is not
    lucky = ["6+4=1 1+7-5+9", "1+7=8 8-5+9", "8-5=2 2+9", "2+9=1"]
    assert final_answer(lucky) == "1" and not solves(EXAMPLE, STEP_SEPARATOR.join(lucky) + answer)
    # a solution cut before its end (the token budget) does not solve it
    assert not solves(EXAMPLE, STEP_SEPARATOR.join(EXAMPLE_STEPS[:3]))


def test_check_final_step_must_not_restate() -> None:
    assert check_steps("2+9", ["2+9=1"]) == [1]
    assert check_steps("2+9", ["2+9=1 1"]) == [0]


def test_check_whitespace_around_a_step_is_ignored_inside_is_not() -> None:
    assert check_steps("2+9", ["  2+9=1\n"]) == [1]
    assert check_steps("2+9", ["2 + 9 = 1"]) == [0]


@pytest.mark.parametrize(
    "steps, expected",
    [
        (["hello", "0+7=7 7-5+9"], [0, 0]),  # unreadable first step: nothing to continue from
        (["6+4=0 0+7-5+", "0+7=7 7-5+9"], [0, 0]),  # restatement is not an expression
        ([None, 5, b"6+4=0"], [0, 0, 0]),  # not even strings
        (["", "\n\n", "# Answer"], [0, 0, 0]),
        (["６+4=0 0+7-5+9"], [0]),  # a full-width digit is not a digit here
        (["6+4=0 0+7-5+9" * 50], [0]),
    ],
)
def test_check_garbage_is_wrong_and_never_raises(steps: list, expected: list[int]) -> None:
    assert check_steps(EXAMPLE, steps) == expected


def test_check_too_many_and_too_few_steps() -> None:
    assert check_steps(EXAMPLE, [*EXAMPLE_STEPS, "1+1=2"]) == [1, 1, 1, 1, 0]
    assert check_steps(EXAMPLE, [*EXAMPLE_STEPS, "1+1=2", "2+0=2"]) == [1, 1, 1, 1, 0, 0]
    assert check_steps(EXAMPLE, EXAMPLE_STEPS[:2]) == [1, 1]
    assert check_steps(EXAMPLE, []) == []


def test_check_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not a synthetic problem"):
        check_steps("6+4+", EXAMPLE_STEPS)
    with pytest.raises(TypeError, match="not one string"):
        check_steps(EXAMPLE, STEP_SEPARATOR.join(EXAMPLE_STEPS))


# --- labelling -----------------------------------------------------------------------------------------


def test_label_correct_solution() -> None:
    assert label_steps(EXAMPLE, EXAMPLE_STEPS) == ([1, 1, 1, 1], 1)


def test_label_stops_after_first_error() -> None:
    # Step 2 (7-5) written as 3, then continued from 3: 3+9=2.
    steps = ["6+4=0 0+7-5+9", "0+7=7 7-5+9", "7-5=3 3+9", "3+9=2"]
    assert check_steps(EXAMPLE, steps) == [1, 1, 0, 1]
    assert label_steps(EXAMPLE, steps) == ([1, 1, 0, None], 0)


def test_label_outcome_is_the_graders_verdict() -> None:
    # Two errors that cancel: 6+4 written as 1 (+1), 7-5 from 8 written as 2 (-1): the answer is right.
    steps = ["6+4=1 1+7-5+9", "1+7=8 8-5+9", "8-5=2 2+9", "2+9=1"]
    assert label_steps(EXAMPLE, steps) == ([0, None, None, None], 1)
    # An unfinished solution has no answer, so its outcome is 0 though every step is right.
    assert label_steps(EXAMPLE, EXAMPLE_STEPS[:3]) == ([1, 1, 1], 0)
    assert label_steps(EXAMPLE, [*EXAMPLE_STEPS, "1+1=2"]) == ([1, 1, 1, 1, 0], 0)


def test_final_answer() -> None:
    assert final_answer(EXAMPLE_STEPS) == "1"
    assert final_answer(EXAMPLE_STEPS[:3]) is None
    assert final_answer(["garbage"]) is None
    assert final_answer([]) is None


# --- corrupting ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("position", [0, 1, 2, 3])
def test_corrupt_steps_wrong_at_the_given_position(position: int) -> None:
    steps, where = corrupt_steps(EXAMPLE, random.Random(position), position)
    assert where == position
    assert len(steps) == 4
    expected = [1, 1, 1, 1]
    expected[position] = 0
    assert check_steps(EXAMPLE, steps) == expected
    assert final_answer(steps) != answer_of(EXAMPLE)
    # Only the result digit (and what follows from it) changed: the operation is the correct one.
    assert steps[:position] == EXAMPLE_STEPS[:position]
    assert steps[position][:4] == EXAMPLE_STEPS[position][:4]
    assert steps[position][4] != EXAMPLE_STEPS[position][4]


def test_corrupt_steps_random_position_is_found_by_the_checker() -> None:
    rng = random.Random(7)
    seen = set()
    for _ in range(40):
        steps, where = corrupt_steps(EXAMPLE, rng)
        seen.add(where)
        assert check_steps(EXAMPLE, steps).index(0) == where
        assert label_steps(EXAMPLE, steps)[1] == 0
    assert seen == {0, 1, 2, 3}


@pytest.mark.parametrize("position", [0, 1, 2])
def test_a_miscopied_operation_is_computed_right_for_what_was_written(position: int) -> None:
    # EXAMPLE 6+4+7-5+9; the remainder before step `position` is what the correct steps restate
    remainder = ([EXAMPLE] + [s.split(" ")[1] for s in EXAMPLE_STEPS[:-1]])[position]
    for seed in range(20):
        steps, _ = corrupt_steps(EXAMPLE, random.Random(seed), position, kind="operation")
        assert steps[:position] == EXAMPLE_STEPS[:position]
        head, rest = steps[position].split(" ")
        written, result = head.split("=")
        assert written != remainder[:3]  # miscopied ...
        assert int(result) == (int(written[0]) + (1 if written[1] == "+" else -1) * int(written[2])) % 10  # ... computed right
        assert rest == result + remainder[3:]  # and the rest restated as it was
        assert check_steps(EXAMPLE, steps)[position] == 0
        assert label_steps(EXAMPLE, steps)[0][position + 1 :] == [None] * (3 - position)


def test_a_miscopied_restatement_changes_one_character_after_the_result() -> None:
    for seed in range(20):
        steps, _ = corrupt_steps(EXAMPLE, random.Random(seed), 1, kind="restatement")
        head, rest = steps[1].split(" ")
        good_head, good_rest = EXAMPLE_STEPS[1].split(" ")
        assert head == good_head and rest[0] == good_rest[0] and len(rest) == len(good_rest)
        assert sum(a != b for a, b in zip(rest, good_rest)) == 1
        assert check_steps(EXAMPLE, steps)[:2] == [1, 0]
    # the last step restates nothing: its error is a wrong result
    steps, _ = corrupt_steps(EXAMPLE, random.Random(0), 3, kind="restatement")
    assert steps[3][:4] == EXAMPLE_STEPS[3][:4] and steps[3] != EXAMPLE_STEPS[3]


def test_error_kinds_are_mixed_and_checked() -> None:
    problems = generate_problems(40, levels=[2], seed=3)
    solutions = generate_step_solutions(problems, 1.0, seed=0, error_kinds=["operation", "restatement"])
    assert all(0 in s.labels for s in solutions)  # every solution has its wrong step found by the checker
    with pytest.raises(ValueError, match="error_kinds"):
        generate_step_solutions(problems, 0.5, error_kinds=["typo"])


def test_corrupt_steps_rejects_a_bad_position() -> None:
    with pytest.raises(ValueError, match="0..3"):
        corrupt_steps(EXAMPLE, random.Random(0), 4)


# --- generating problems -------------------------------------------------------------------------------


def test_problems_per_level_have_level_plus_one_operations() -> None:
    problems = generate_problems(3, seed=1)
    assert [p.level for p in problems] == [1] * 3 + [2] * 3 + [3] * 3 + [4] * 3 + [5] * 3
    for p in problems:
        steps = solve_steps(p.problem)
        assert num_operations(p.problem) == len(steps) == p.level + 1
        assert len(p.problem) == 2 * p.level + 3
        assert p.solution == STEP_SEPARATOR.join(steps)
        assert p.answer == answer_of(p.problem) == steps[-1][-1]
        assert p.subject == "Arithmetic (mod 10)"
    assert [p.unique_id for p in problems[:3]] == [f"synthetic/L1/train/{k}" for k in range(3)]
    assert generate_problems(1, levels=[2], split="test")[0].unique_id == "synthetic/L2/test/0"


def test_problems_are_deterministic_by_seed() -> None:
    a = generate_problems(20, levels=(1, 3), seed=5)
    assert a == generate_problems(20, levels=(1, 3), seed=5)
    assert [p.problem for p in a] != [p.problem for p in generate_problems(20, levels=(1, 3), seed=6)]


def test_problem_texts_are_distinct_even_at_full_capacity() -> None:
    texts = [p.problem for p in generate_problems(4000, levels=[1], seed=3)]
    assert len(set(texts)) == 4000
    assert len({p.problem for p in generate_problems(300, levels=(1, 2), seed=3)}) == 600


def test_counts_as_a_mapping() -> None:
    problems = generate_problems({3: 1, 1: 2})
    assert [p.level for p in problems] == [1, 1, 3]
    with pytest.raises(ValueError, match="missing \\[2\\]"):
        generate_problems({1: 2}, levels=[1, 2])


def test_exclusion_keeps_splits_disjoint() -> None:
    train = {p.problem for p in generate_problems(1000, levels=[1], seed=0)}
    test = {p.problem for p in generate_problems(3000, levels=[1], seed=0, exclude=train)}
    assert len(test) == 3000 and not train & test


def test_exclusion_of_texts_the_same_seed_would_draw() -> None:
    # A sparse request (50 of 80,000): the same seed draws the same texts unless exclusion works.
    first = [p.problem for p in generate_problems(50, levels=[2], seed=4)]
    again = [p.problem for p in generate_problems(50, levels=[2], seed=4, exclude=first[:5])]
    assert again[:45] == first[5:] and not set(first[:5]) & set(again)


def test_exclusion_leaves_exactly_the_rest() -> None:
    everything = [p.problem for p in generate_problems(4000, levels=[1])]
    left = set(everything[:10])
    got = generate_problems(10, levels=[1], seed=9, exclude=everything[10:])
    assert {p.problem for p in got} == left


def test_asking_for_more_problems_than_exist_is_an_error() -> None:
    with pytest.raises(ValueError, match="level 1 has at most 4000 distinct problems"):
        generate_problems(4001, levels=[1])
    some = [p.problem for p in generate_problems(5, levels=[1])]
    with pytest.raises(ValueError, match="5 of them excluded.*only 3995 are available"):
        generate_problems(3996, levels=[1], exclude=some)
    with pytest.raises(ValueError, match="integer >= 0"):
        generate_problems(-1)


# --- step-labelled solutions ---------------------------------------------------------------------------


def test_step_solutions_labels_are_recomputable() -> None:
    problems = generate_problems(4, seed=2)  # 20 problems
    solutions = generate_step_solutions(problems, wrong_fraction=0.5, seed=4)
    assert len(solutions) == 20
    assert sum(0 in s.labels for s in solutions) == 10
    for p, s in zip(problems, solutions):
        assert (s.problem, s.answer, s.level, s.unique_id, s.source) == (
            p.problem, p.answer, p.level, p.unique_id, "synthetic"
        )
        labels, outcome = label_steps(s.problem, s.steps)
        assert (list(s.labels), s.outcome) == (labels, outcome)
        # One injected error always makes the answer wrong; a correct solution is the reference solution.
        assert s.outcome == (0 not in s.labels)
        # The last step carries the answer section, as the generator writes it (SFT response format).
        assert s.steps[-1].endswith(f"\n\n# Answer\n\n{final_answer(s.steps)}")
        if s.outcome:
            assert STEP_SEPARATOR.join(s.steps) == f"{p.solution}\n\n# Answer\n\n{p.answer}"
    assert generate_step_solutions(problems, 0.5, seed=4) == solutions


def test_step_solutions_fraction_extremes() -> None:
    problems = generate_problems(2, levels=(1, 2))
    assert all(s.outcome == 1 for s in generate_step_solutions(problems, wrong_fraction=0.0))
    assert all(s.outcome == 0 for s in generate_step_solutions(problems, wrong_fraction=1.0))
    with pytest.raises(ValueError, match="wrong_fraction"):
        generate_step_solutions(problems, wrong_fraction=1.5)


# --- files and command line ----------------------------------------------------------------------------


def test_the_benchmark_does_not_change_between_versions() -> None:
    # Every config, measured number and trained model refers to these problems: a change to how the splits
    # are seeded (e.g. their seeds' namespace) would silently replace the benchmark.
    train, test = benchmark_splits(3, 2, seed=0)
    assert [p.problem for p in train[:3]] == ["1+4+4", "2+7+5", "2-8-3"]
    assert [p.problem for p in test if p.level == 5] == ["3-6-9+5-3-9+8", "7-0-6+6-3-5+9"]
    train, test = benchmark_splits(2000, 60, seed=0)
    assert (train[0].problem, train[2000].problem) == ("1+4+4", "0+3+5+8")
    assert (test[-1].problem, test[-1].unique_id) == ("1+0+6-0+7-0-8", "synthetic/L5/test/59")


def test_write_benchmark_files_read_back(tmp_path) -> None:
    paths = write_benchmark(tmp_path / "bench", 6, 3, levels=(1, 4), seed=1, wrong_fraction=0.5)
    assert set(paths) == {"train", "test", "train_steps", "test_steps"}
    train = [row for _, row in read_jsonl(paths["train"])]
    test = [row for _, row in read_jsonl(paths["test"])]
    assert [r["level"] for r in train] == [1] * 6 + [4] * 6
    assert [r["level"] for r in test] == [1] * 3 + [4] * 3
    assert set(train[0]) == {"problem", "solution", "answer", "level", "subject", "unique_id"}
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    train_steps = list(read_step_solutions(paths["train_steps"]))
    test_steps = list(read_step_solutions(paths["test_steps"]))
    assert [s.unique_id for s in train_steps] == [r["unique_id"] for r in train]
    assert [s.problem for s in test_steps] == [r["problem"] for r in test]
    assert sum(0 in s.labels for s in train_steps) == 6
    # Same seed, same bytes.
    again = write_benchmark(tmp_path / "again", 6, 3, levels=(1, 4), seed=1, wrong_fraction=0.5)
    assert all(paths[k].read_bytes() == again[k].read_bytes() for k in paths)
