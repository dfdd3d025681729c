"""Grading on real completions: extraction and equivalence end to end on MATH500 problems, written the way
models write them (the gold solution itself, the answer in another equivalent form, two boxes, a solution cut
before its answer), and the samples summary counting them. Reads ../shared/data/math/test.jsonl (skipped,
naming the file, when absent)."""

import json
import re

import pytest

from e2h.data.samples import read_samples
from e2h.eval.sample_accuracy import summarize
from e2h.grading import extract_answer, is_equivalent

N = 120  # the first problems of MATH500: every answer type in the file, seconds to grade


@pytest.fixture(scope="module")
def math500(shared_file):
    with shared_file("math/test.jsonl").open() as f:
        return [json.loads(line) for line in f][:N]


def _last_box_start(solution: str) -> int:
    return max(m.start() for m in re.finditer(r"\\boxed", solution))


def test_the_gold_solution_grades_correct(math500):
    wrong = [(p["unique_id"], p["answer"], extract_answer(p["solution"])) for p in math500
             if not is_equivalent(extract_answer(p["solution"]), p["answer"])]
    assert not wrong


def test_the_gold_answer_in_another_equivalent_form_grades_correct(math500):
    def rewritten(answer: str) -> str | None:
        if re.fullmatch(r"-?\d+", answer):
            return f"{answer}.0"  # 12 -> 12.0
        if m := re.fullmatch(r"\\frac\{(\d+)\}\{(\d+)\}", answer):
            return f"{m.group(1)}/{m.group(2)}"  # \frac{3}{4} -> 3/4
        if answer.startswith("\\frac"):
            return "\\dfrac" + answer[len("\\frac"):]
        return None

    forms = [(p, rewritten(p["answer"])) for p in math500]
    forms = [(p, f) for p, f in forms if f is not None]
    assert len(forms) >= 50
    for p, form in forms:
        completion = p["solution"][: _last_box_start(p["solution"])] + f"\\boxed{{{form}}}."
        assert is_equivalent(extract_answer(completion), p["answer"]), (p["unique_id"], form)


def test_with_two_boxes_the_last_one_is_the_answer(math500):
    p = next(p for p in math500 if re.fullmatch(r"\d+", p["answer"]))
    wrong = str(int(p["answer"]) + 1)
    assert is_equivalent(extract_answer(f"First $\\boxed{{{wrong}}}$, then corrected: $\\boxed{{{p['answer']}}}$"), p["answer"])
    assert not is_equivalent(extract_answer(f"$\\boxed{{{p['answer']}}}$, no: $\\boxed{{{wrong}}}$"), p["answer"])


def test_a_solution_cut_before_its_answer_has_none(math500):
    for p in math500:
        cut = p["solution"][: _last_box_start(p["solution"])]
        # A cut solution is a clipped completion: its callers pass free_text=False (no lucky last formula).
        assert extract_answer(cut, free_text=False) is None or "\\boxed" in cut, p["unique_id"]


def test_the_samples_summary_counts_them(math500, tmp_path, write_jsonl):
    rows = []
    for i, p in enumerate(math500[:10]):
        cut = p["solution"][: _last_box_start(p["solution"])]
        for k, completion in enumerate((p["solution"], cut)):
            answer = extract_answer(completion)
            rows.append({"problem_id": p["unique_id"], "level": p["level"], "sample_index": k, "prompt": p["problem"],
                         "completion": completion, "answer": answer, "gold": p["answer"],
                         "correct": is_equivalent(answer, p["answer"]), "num_tokens": 0})
    table = summarize(read_samples(write_jsonl(tmp_path / "samples.jsonl", rows)))
    # each problem: its gold solution right, its cut copy wrong (unless the cut copy still holds an earlier box)
    assert table["all"].problems == 10 and table["all"].any_correct == 10
    expected = sum(r["correct"] for r in rows) / 2  # per problem, the mean of its two samples
    assert table["all"].sample_correct == pytest.approx(expected)
    assert sum(r["correct"] for r in rows[1::2]) <= sum("\\boxed" in r["completion"] for r in rows[1::2])
