"""The pointer-chain benchmark: its solutions, its local step check and its generated splits, against values
worked out by hand."""

from __future__ import annotations

import json
import random

import pytest

from e2h.data import chains
from e2h.data.exact_check import checker_for
from e2h.data.prompts import STEP_SEPARATOR, answer_section
from e2h.data.step_solutions import completion_steps

# The module's example: start 3 at f; f+8 -> 1 (11 mod 10), q*3 -> 3, a*4 -> 12 mod 10 = 2, then the end.
# x, g, e, c are distractors: a chain of their own (x -> g -> e -> c -> end) that nothing points into.
PROBLEM = "3>f|a*4>. f+8>q c-2>. q*3>a e+5>c g-1>e x*2>g"
SOLUTION = ["f+8=1>q", "q*3=3>a", "a*4=2>."]


def test_the_module_example_is_solved_exactly() -> None:
    assert chains.solve_steps(PROBLEM) == SOLUTION
    assert chains.answer_of(PROBLEM) == "2"
    assert chains.level_of(PROBLEM) == 2


def test_subtraction_and_multiplication_wrap_modulo_10() -> None:
    # 2-7 = -5 = 5; 5*6 = 30 = 0.
    problem = "2>b|b-7>k k*6>. z+1>y y+2>."
    assert chains.solve_steps(problem) == ["b-7=5>k", "k*6=0>."]


@pytest.mark.parametrize(
    "bad",
    ["", "3+4", "3>f|", "3>f|f+8>q", "3>f|f+8>. f+1>.", "3>f|f+8>g g-1>f", "x>f|f+8>."],
)
def test_parse_rejects_what_is_not_a_problem(bad: str) -> None:
    # Not a problem at all, an undefined pointer, a name defined twice, a cycle, a non-digit start.
    with pytest.raises(ValueError, match="pointer-chain problem"):
        chains.parse(bad)


def test_a_right_solution_checks_right_fillers_included() -> None:
    assert chains.check_steps(PROBLEM, SOLUTION) == [1, 1, 1]
    assert chains.check_steps(PROBLEM, ["~", "f+8=1>q", "~", "~", "q*3=3>a", "a*4=2>."]) == [1] * 6


def test_each_error_kind_is_named_and_the_check_is_local() -> None:
    # A wrong result (q*3 from 1 is 3; 7 is written), then the next step computed from the written 7:
    # a*4 = 28 = 8, right *for what was written*.
    assert chains.step_errors(PROBLEM, ["f+8=1>q", "q*3=7>a", "a*4=8>."]) == [None, "result", None]
    # The right name with another definition's operation.
    assert chains.step_errors(PROBLEM, ["f+8=1>q", "q*4=4>a"]) == [None, "operation"]
    # The name the previous step did not point to (a distractor), then an early end.
    assert chains.step_errors(PROBLEM, ["c-2=1>."])[0] == "pointer"
    assert chains.step_errors(PROBLEM, ["f+8=1>q", "q*3=3>."]) == [None, "pointer"]
    # Not a step; and anything after the chain has ended.
    assert chains.step_errors(PROBLEM, ["f+8=1 q"]) == ["format"]
    assert chains.step_errors(PROBLEM, [*SOLUTION, "~"]) == [None, None, None, "format"]


def test_solves_needs_every_step_right_and_the_chain_ended() -> None:
    full = STEP_SEPARATOR.join(SOLUTION) + answer_section("2")
    assert chains.solves(PROBLEM, full)
    assert chains.solves(PROBLEM, "~" + STEP_SEPARATOR + full)
    # Stopped one step short: every written step is right, yet the chain did not end.
    assert not chains.solves(PROBLEM, STEP_SEPARATOR.join(SOLUTION[:2]) + answer_section("3"))
    # The right answer 2 after a wrong middle step (q*3=7, then a*4 from 3 written as 2) is luck, not a solution.
    lucky = STEP_SEPARATOR.join(["f+8=1>q", "q*3=7>a", "a*4=2>."]) + answer_section("2")
    assert not chains.solves(PROBLEM, lucky)
    assert chains.final_answer(completion_steps(lucky)) == "2"


def test_labels_stop_after_the_first_wrong_step_and_the_outcome_is_the_answers() -> None:
    assert chains.label_steps(PROBLEM, ["f+8=1>q", "q*3=7>a", "a*4=8>."]) == ([1, 0, None], 0)
    assert chains.label_steps(PROBLEM, ["~", *SOLUTION]) == ([1, 1, 1, 1], 1)
    assert chains.final_answer(SOLUTION[:2]) is None  # no end pointer, no answer


class _Draws(random.Random):
    """A Random whose randrange gives fixed values, so a corruption is worked out by hand."""

    def __init__(self, *values: int) -> None:
        super().__init__(0)
        self.values = list(values)

    def randrange(self, *args, **kwargs) -> int:
        return self.values.pop(0)


def test_each_corruption_writes_one_wrong_step_of_its_kind() -> None:
    # result at step 1: q*3 from 1 is 3, +4 gives 7; a*4 then continues from 7: 28 = 8.
    steps, at = chains.corrupt_steps(PROBLEM, _Draws(4), position=1, kind="result")
    assert (steps, at) == (["f+8=1>q", "q*3=7>a", "a*4=8>."], 1)
    assert chains.step_errors(PROBLEM, steps) == [None, "result", None]
    # pointer at step 1: q*3=3 points to the end, so the chain stops one operation early, on 3.
    steps, _ = chains.corrupt_steps(PROBLEM, random.Random(0), position=1, kind="pointer")
    assert steps == ["f+8=1>q", "q*3=3>."]
    assert chains.label_steps(PROBLEM, steps) == ([1, 0], 0)
    # operation at step 0: another operand or the other of + and -, its value computed for what is written.
    for seed in range(20):
        steps, _ = chains.corrupt_steps(PROBLEM, random.Random(seed), position=0, kind="operation")
        assert chains.step_errors(PROBLEM, steps) == ["operation", None, None]
        assert steps[0] != "f+8=1>q" and steps[1:] != SOLUTION[1:]  # later steps go on from the new value


def test_a_pointer_corruption_is_never_the_last_step_and_bad_arguments_are_refused() -> None:
    # The last step already points to the end: a level-2 chain has two places to end early.
    positions = {chains.corrupt_steps(PROBLEM, random.Random(s), kind="pointer")[1] for s in range(40)}
    assert positions == {0, 1}
    with pytest.raises(ValueError, match=r"position must be a step index in 0\.\.1 for a pointer error"):
        chains.corrupt_steps(PROBLEM, random.Random(0), position=2, kind="pointer")
    with pytest.raises(ValueError, match="unknown error kind 'format'"):
        chains.corrupt_steps(PROBLEM, random.Random(0), kind="format")
    kinds = r"\('result', 'operation', 'pointer'\)"
    with pytest.raises(ValueError, match=f"error_kinds must be a non-empty list of {kinds}"):
        chains.generate_step_solutions([], 0.5, error_kinds=["restatement"])


def test_corrupted_solutions_are_labelled_by_the_checker_and_read_as_a_step_source() -> None:
    from e2h.data.prompts import PromptFormat
    from e2h.datamodules.sources import StepSource

    sizes = {"train": 40, "test": 5}
    source = StepSource(source="chains", levels=[1, 2], synthetic_per_level=sizes, wrong_fraction=0.5,
                        error_kinds=["pointer"])
    examples = source.load(PromptFormat())
    assert len(examples) == 80 and examples[0].where.startswith("chains train split, chains/L1/train/")
    wrong = [e.solution for e in examples if 0 in e.solution.labels]
    assert len(wrong) == 40  # exactly half, each ended early: one step fewer than its chain
    for solution in wrong:
        assert solution.labels[-1] == 0 and len(solution.steps) <= solution.level
        assert solution.steps[-1].split("# Answer")[0].strip().endswith(">.")
    with pytest.raises(ValueError, match="`source` names a generated benchmark"):
        StepSource(source="math")
    with pytest.raises(ValueError, match="`fillers` applies to 'synthetic' step sources of source 'chains' only"):
        StepSource(fillers=0.4)
    with pytest.raises(ValueError, match="`source` applies to 'synthetic' step sources only"):
        StepSource(kind="samples", path="x.jsonl", source="chains")


@pytest.mark.parametrize("source", ["synthetic", "chains"])
def test_a_limited_step_source_keeps_its_wrong_fraction(source: str) -> None:
    # `limit` and the choice of corrupted solutions once drew from the same stream, random.Random(seed), so a
    # limit kept exactly the corrupted solutions: a PRM saw no right solution end at all.
    from e2h.data.prompts import PromptFormat
    from e2h.datamodules.sources import StepSource

    sizes = {"train": 400, "test": 5}
    kinds = ["pointer", "result"] if source == "chains" else ["result"]
    examples = StepSource(source=source, levels=[2, 3], synthetic_per_level=sizes, limit=200, error_kinds=kinds).load(
        PromptFormat()
    )
    wrong = sum(0 in e.solution.labels for e in examples)
    assert 70 <= wrong <= 130  # about half of 200 (binomial SD 7), not all of them


def test_fillers_in_corrupted_solutions_change_nothing_else() -> None:
    from e2h.datamodules.sources import ProblemSource

    problems = ProblemSource(source="chains", levels=[2, 3], synthetic_per_level={"train": 50, "test": 5}).load()
    plain = chains.generate_step_solutions(problems, 0.5, seed=3, error_kinds=list(chains.ERROR_KINDS))
    filled = chains.generate_step_solutions(problems, 0.5, seed=3, error_kinds=list(chains.ERROR_KINDS), fillers=0.4)
    fillers = 0
    for a, b in zip(plain, filled):
        real = [(step, label) for step, label in zip(b.steps, b.labels) if not chains.is_filler(step)]
        assert real == list(zip(a.steps, a.labels)) and b.outcome == a.outcome  # the same corruption
        # A filler is right while the chain runs, so it is labelled 1 before the first error, None after it.
        first_wrong = b.labels.index(0) if 0 in b.labels else len(b.steps)
        filler_labels = [label for step, label in zip(b.steps, b.labels) if chains.is_filler(step)]
        expected = [1 if i < first_wrong else None for i, step in enumerate(b.steps) if chains.is_filler(step)]
        assert filler_labels == expected
        fillers += len(b.steps) - len(a.steps)
    # 0.4 / 0.6 = 0.67 fillers a step on average: about 210 expected over the 100 solutions' 316 steps.
    assert 120 < fillers < 330
    with pytest.raises(ValueError, match="fillers is the probability"):
        chains.generate_step_solutions(problems, 0.5, fillers=1.0)


def test_problems_have_seven_definitions_and_level_plus_one_operations() -> None:
    rng = random.Random(0)
    for level in range(1, chains.MAX_LEVEL + 1):
        text = chains.random_problem(level, rng)
        assert len(chains.parse(text).definitions) == chains.DEFINITIONS
        assert chains.level_of(text) == level
    with pytest.raises(ValueError, match="level"):
        chains.random_problem(chains.MAX_LEVEL + 1, rng)


def test_splits_are_disjoint_deterministic_and_fillers_change_only_train_solutions() -> None:
    train, test = chains.benchmark_splits(50, 20, levels=[1, 3, 5], seed=4)
    assert not {p.problem for p in train} & {p.problem for p in test}
    assert [p.level for p in test] == [1] * 20 + [3] * 20 + [5] * 20
    assert test[0].unique_id == "chains/L1/test/0"
    assert chains.benchmark_splits(50, 20, levels=[1, 3, 5], seed=4) == (train, test)
    filled, filled_test = chains.benchmark_splits(50, 20, levels=[1, 3, 5], seed=4, fillers=0.5)
    assert [p.problem for p in filled] == [p.problem for p in train] and filled_test == test
    assert any("~" in p.solution for p in filled) and not any("~" in p.solution for p in train)
    for p in filled + test:
        steps = p.solution.split(STEP_SEPARATOR)
        assert all(chains.check_steps(p.problem, steps)) and chains.final_answer(steps) == p.answer


def test_filler_counts_are_geometric() -> None:
    # With probability p of one more filler, a step gets k fillers with probability p^k (1 - p): mean p / (1 - p).
    rng = random.Random(0)
    counts = [len(chains.with_fillers(["x"], 0.4, rng)) - 1 for _ in range(20000)]
    assert sum(counts) / len(counts) == pytest.approx(0.4 / 0.6, abs=0.03)
    assert counts.count(0) / len(counts) == pytest.approx(0.6, abs=0.02)


def test_answers_are_checked_against_their_chance_level() -> None:
    # The best constant guess (0) is right 14-15% of the time, the chance level the benchmark declares.
    rng = random.Random(1)
    answers = [chains.answer_of(chains.random_problem(5, rng)) for _ in range(5000)]
    assert 0.12 < answers.count("0") / len(answers) <= chains.ANSWER_CHANCE


def test_the_checker_is_found_from_the_id() -> None:
    assert checker_for("chains/L4/test/3") is chains
    assert checker_for("synthetic/L4/test/3").SOURCE == "synthetic"
    assert checker_for("math/algebra/1.json") is None and checker_for(None) is None
    assert checker_for("chains") is None  # a bare name is not an id of the benchmark


# --- the benchmark inside evaluation and labelling: each use site finds this checker from the id ------------


def _sample_line(completion: str, answer: str, sample_index: int = 0, level: int = 2) -> dict:
    from e2h.data.prompts import PromptFormat

    return {"problem_id": "chains/L2/test/0", "level": level, "sample_index": sample_index,
            "prompt": PromptFormat("paper").prompt(PROBLEM), "completion": completion, "answer": answer,
            "gold": "2", "correct": answer == "2", "num_tokens": len(completion)}


def test_a_sample_is_labelled_step_by_step_by_the_chain_checker() -> None:
    from e2h.data.samples import sample_solution

    completion = STEP_SEPARATOR.join(["~", "f+8=1>q", "q*3=7>a", "a*4=8>."]) + answer_section("8")
    solution = sample_solution(_sample_line(completion, "8"), process_labels=True, where="x")
    assert solution.labels == (1, 1, 0, None) and solution.outcome == 0
    # For validation, the filler is left unlabelled: step AUROC then counts only steps that compute.
    unlabelled = sample_solution(_sample_line(completion, "8"), process_labels=True, where="x", label_fillers=False)
    assert unlabelled.labels == (None, 1, 0, None)


def test_a_step_source_leaves_fillers_unlabelled_on_request(tmp_path, write_jsonl) -> None:
    from e2h.data.prompts import PromptFormat
    from e2h.datamodules.sources import StepSource

    completion = STEP_SEPARATOR.join(["~", "f+8=1>q", "~", "q*3=3>a", "a*4=2>."]) + answer_section("2")
    path = write_jsonl(tmp_path / "samples.jsonl", [_sample_line(completion, "2")])
    source = StepSource(kind="samples", path=str(path), process_labels=True, label_fillers=False)
    assert source.load(PromptFormat()).pop().solution.labels == (None, 1, None, 1, 1)
    with pytest.raises(ValueError, match="`label_fillers` applies with `process_labels: true`"):
        StepSource(kind="samples", path=str(path), label_fillers=False)


def test_solved_and_chance_figures_of_chain_samples() -> None:
    from e2h.eval.greedy import solved_exactly
    from e2h.eval.sample_accuracy import summarize

    right = STEP_SEPARATOR.join(SOLUTION) + answer_section("2")
    lucky = STEP_SEPARATOR.join(["f+8=1>q", "q*3=7>a", "a*4=2>."]) + answer_section("2")
    assert solved_exactly({"unique_id": "chains/L2/test/0", "problem": PROBLEM}, right, True)
    assert not solved_exactly({"unique_id": "chains/L2/test/0", "problem": PROBLEM}, lucky, True)
    rows = [dict(_sample_line(lucky, "2", 0), solved=False), dict(_sample_line(lucky, "2", 1), solved=False)]
    figures = summarize({"chains/L2/test/0": rows})["level_2"].figures()
    # Both samples answer 2, right by luck: pass@2 is 1, solved pass@2 is 0; chance is the best guess's 15%.
    assert figures["pass"] == 1 and figures["solved_pass"] == 0 and figures["chance"] == 0.15
    assert figures["pass_chance"] == pytest.approx(1 - 0.85**2)


def test_step_auroc_reads_chain_error_kinds() -> None:
    from e2h.eval.step_auroc import labelled_steps, step_auroc

    def row(steps: list[str], scores: list[float]) -> dict:
        line = _sample_line("", "")
        return {**line, "level": 4, "steps": steps, "step_scores": scores}

    rows = [row(["f+8=1>q", "q*3=3>a"], [0.9, 0.7]), row(["f+8=1>q", "q*3=3>."], [0.8, 0.3]),
            row(["~", "f+8=4>q"], [0.99, 0.95])]
    # right {0.9, 0.7, 0.8}; a pointer error at 0.3 (below all), a result error at 0.95 (above all). The filler
    # step scored 0.99 is left out: counted as a right step it would lift both AUROCs.
    figures = step_auroc(labelled_steps(rows))
    assert figures["by_kind"] == {"pointer": {"auroc": 1.0, "wrong": 1}, "result": {"auroc": 0.0, "wrong": 1}}
    assert figures["by_subset"]["level_4"]["auroc"] == pytest.approx(0.5)


def test_configs_name_the_benchmark_as_a_problem_source() -> None:
    from e2h.datamodules.sources import ProblemSource

    sizes = {"train": 30, "test": 5}
    test = ProblemSource(source="chains", split="test", levels=[4, 5], synthetic_per_level=sizes).load()
    assert [p.unique_id for p in test[:1]] == ["chains/L4/test/0"] and len(test) == 10
    train = ProblemSource(source="chains", levels=[1], synthetic_per_level=sizes, fillers=0.9).load()
    assert sum(p.solution.count("~") for p in train) > 30  # about 9 fillers a step at 0.9
    with pytest.raises(ValueError, match="`fillers` applies to source 'chains' only"):
        ProblemSource(source="synthetic", fillers=0.4)


def test_the_report_command_prints_and_writes_each_scorers_step_auroc(tmp_path, write_jsonl, capsys) -> None:
    from e2h.cli.report import main

    right = STEP_SEPARATOR.join(SOLUTION) + answer_section("2")
    early = STEP_SEPARATOR.join(["f+8=1>q", "q*3=3>."]) + answer_section("3")
    samples = [_sample_line(right, "2", 0, level=4), _sample_line(early, "3", 1, level=4)]
    scored = [{**samples[0], "steps": completion_steps(right), "step_scores": [0.9, 0.8, 0.7], "score": 0.7},
              {**samples[1], "steps": completion_steps(early), "step_scores": [0.85, 0.2], "score": 0.2}]
    args = ["--samples", str(write_jsonl(tmp_path / "s.jsonl", samples)), "--ns", "1", "2"]
    folder, tb = tmp_path / "report", tmp_path / "tb"
    assert main([*args, "--scores", f"prm={write_jsonl(tmp_path / 'p.jsonl', scored)}", "--out", str(folder),
                 "--tensorboard", str(tb)]) == 0
    out = capsys.readouterr().out
    # Right steps {0.9, 0.8, 0.7, 0.85} against the early end at 0.2: every pair ordered right. Position
    # alone: right at 1, 2, 3, 1 against wrong at 2: two pairs right, one tie, one wrong -> 2.5 / 4.
    assert "## step AUROC of prm on the samples' own steps" in out
    assert "| level_4 | 1.000 | 0.625 | 5 | 1 |" in out
    assert "| error kind pointer (against every right step) | 1.000 | | | 1 |" in out
    # the same figures in the files a researcher keeps: report.md as printed, report.json, TensorBoard
    assert (folder / "report.md").read_text(encoding="utf-8") == out
    figures = json.loads((folder / "report.json").read_text(encoding="utf-8"))["step_auroc"]["prm"]
    assert figures["by_subset"]["level_4"] == {"auroc": 1.0, "position_auroc": 0.625, "steps": 5, "wrong": 1}
    (events,) = tb.glob("events.out.tfevents.*")
    assert b"step_auroc/level_4/prm" in events.read_bytes() and b"step_auroc/hard/position_alone" in events.read_bytes()
