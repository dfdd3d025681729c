"""ReST-EM's accepted solutions and iterative DPO's pairs, chosen by the evaluators easy-to-hard allows."""

import json

import pytest

from e2h.cli.main import main
from e2h.data.errors import DataError
from e2h.data.self_training import accepted_records, evaluator_value, preference_pairs

PROMPT = "# Question\n\n3+4-1\n\n# Solution\n\n"


def sample(i, level, correct, score=None, clipped=False, gold="6", answer=None, problem="p"):
    completion = f"step {i}\n\n# Answer\n\n{answer or (gold if correct else '9')}"
    row = {"problem_id": problem, "level": level, "sample_index": i, "prompt": PROMPT, "completion": completion,
           "answer": answer or (gold if correct else "9"), "gold": gold, "correct": correct, "clipped": clipped}
    if score is not None:
        row["score"] = score
    return row


def test_the_evaluator_reads_answers_only_where_they_are_visible():
    # visible (level 2): 1 for a right answer + the score; hidden (level 4): the score alone, right or not
    assert evaluator_value(sample(0, 2, True, 0.25), [4, 5]) == 1.25
    assert evaluator_value(sample(0, 2, False, 0.75), [4, 5]) == 0.75
    assert evaluator_value(sample(0, 2, True), [4, 5]) == 1.0  # unscored: the answer alone
    assert evaluator_value(sample(0, 4, True, 0.25), [4, 5]) == 0.25
    assert evaluator_value(sample(0, 2, True, 0.25, gold=None), []) == 0.25  # no gold answer: hidden too
    with pytest.raises(DataError, match="hidden is judged by its reward-model score, and it has none"):
        evaluator_value(sample(0, 4, True), [4, 5])
    with pytest.raises(DataError, match="'score' must be a finite number"):
        evaluator_value(sample(0, 4, True, float("nan")), [4, 5])


def test_rest_em_keeps_right_or_well_scored_complete_solutions_best_first_and_capped():
    samples = {
        "easy": [sample(0, 2, False, 0.9, problem="easy"), sample(1, 2, True, 0.2, problem="easy"),
                 sample(2, 2, True, 0.7, problem="easy"), sample(3, 2, True, 0.8, clipped=True, problem="easy")],
        "hard": [sample(0, 5, False, 0.6, problem="hard"), sample(1, 5, True, 0.4, problem="hard"),
                 sample(2, 5, False, 0.5, problem="hard")],
    }
    records = accepted_records(samples, hidden_levels=[4, 5], threshold=0.5)
    # easy: the right, complete ones (1, 2), best value first: 2 (1.7) then 1 (1.2); the wrong 0 and clipped 3 out.
    # hard: score >= 0.5 whatever the (hidden) answer: 0 (0.6) then 2 (0.5); 1 (0.4) out though right.
    assert [r["unique_id"] for r in records] == ["easy#2", "easy#1", "hard#0", "hard#2"]
    assert records[0] == {"unique_id": "easy#2", "problem": "3+4-1", "solution": "step 2", "answer": "6", "level": 2}
    assert records[2]["answer"] == "9"  # a hidden-answer record keeps the sample's own answer
    # a right answer read from free text (no "# Answer" section): the whole completion is the solution, and the
    # trainer writes the answer section; a sample without any answer is never accepted
    free_text = {"easy": [{**sample(0, 2, True, 0.9, problem="easy"), "completion": "3+4-1=6"},
                          {**sample(1, 2, True, 0.9, problem="easy"), "answer": None}]}
    (record,) = accepted_records(free_text, hidden_levels=[4, 5], threshold=0.5)
    assert (record["solution"], record["answer"]) == ("3+4-1=6", "6")
    capped = accepted_records(samples, hidden_levels=[4, 5], threshold=0.5, max_per_problem=1)
    assert [r["unique_id"] for r in capped] == ["easy#2", "hard#0"]


def test_dpo_pairs_are_best_against_worst_and_ties_give_none():
    samples = {
        "easy": [sample(0, 2, False, 0.9, problem="easy"), sample(1, 2, True, 0.2, problem="easy"),
                 sample(2, 2, True, 0.95, clipped=True, problem="easy")],
        "hard": [sample(0, 5, True, 0.3, problem="hard"), sample(1, 5, False, 0.8, problem="hard")],
        "tie": [sample(0, 5, True, 0.5, problem="tie"), sample(1, 5, False, 0.5, problem="tie")],
    }
    pairs = {p["problem_id"]: p for p in preference_pairs(samples, hidden_levels=[4, 5])}
    assert set(pairs) == {"easy", "hard"}
    # easy: values 0.9, 1.2, 1.95 (clipped: never chosen, but it is not the worst either) -> 1 over 0
    assert pairs["easy"]["chosen"].startswith("step 1") and pairs["easy"]["rejected"].startswith("step 0")
    assert (pairs["easy"]["chosen_value"], pairs["easy"]["rejected_value"]) == (1.2, 0.9)
    # hard: the answers are hidden, so the better-scored wrong answer is chosen over the right one
    assert pairs["hard"]["chosen"].startswith("step 1") and pairs["hard"]["rejected"].startswith("step 0")
    # the paper's margin (more than 1.0) keeps only a right answer against a wrong one by more than a score
    assert preference_pairs(samples, hidden_levels=[4, 5], min_margin=1.0) == []
    assert [p["problem_id"] for p in preference_pairs(samples, hidden_levels=[4, 5], min_margin=0.4)] == ["hard"]  # gaps 0.3, 0.5


def test_a_clipped_worst_sample_is_rejected_without_an_eos(tmp_path):
    samples = {"p": [sample(0, 2, True, 0.9), sample(1, 2, False, 0.1, clipped=True)]}
    (pair,) = preference_pairs(samples, hidden_levels=[])
    assert pair["rejected_clipped"] is True


def test_the_cli_writes_pairs_and_accepted_records(tmp_path, capsys):
    rows = [sample(0, 2, True, 0.9), sample(1, 2, False, 0.1), sample(0, 4, False, 0.7, problem="q"),
            sample(1, 4, True, 0.2, problem="q")]
    path = tmp_path / "scored.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "pairs", str(path), "--out", str(tmp_path / "pairs.jsonl")]) == 0
    assert "2 pairs from 2 problems" in capsys.readouterr().out
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == 2
    assert main(["data", "accepted", str(path), "--out", str(tmp_path / "sft.jsonl"), "--threshold", "0.5"]) == 0
    assert "accepted 2 of 4 samples" in capsys.readouterr().out
    ids = [json.loads(line)["unique_id"] for line in (tmp_path / "sft.jsonl").read_text().splitlines()]
    assert ids == ["p#0", "q#0"]
    # scored nothing, hidden levels present: the error names what is missing and how to get it
    unscored = tmp_path / "unscored.jsonl"
    unscored.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "score"}) + "\n" for r in rows))
    assert main(["data", "pairs", str(unscored), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "has none; score the samples first" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
    # nothing selected: the round stops here, saying why, rather than at an empty fit
    assert main(["data", "accepted", str(path), "--out", str(tmp_path / "x.jsonl"), "--threshold", "2",
                 "--hidden-levels", "2", "4"]) == 2
    assert "the evaluator accepted no sample" in capsys.readouterr().err
    assert main(["data", "pairs", str(path), "--out", str(tmp_path / "x.jsonl"), "--min-margin", "5"]) == 2
    assert "no pairs: in every problem" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
