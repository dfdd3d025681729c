"""Re-ranking (majority, weighted, best-of-N), accuracy against N, and the `e2h data report` command.

Every expected number below is worked out by hand in the comment beside it. The two hand-made problems:

- A (level 1, gold "2"):       answers ["2", "2", "5", None];  orm [0.5, 0.25, 0.875, 1.0];  prm [0.75, 0.5, 0.25, 0.125]
- B (level 4, gold "\\frac12"): answers ["0.5", "7", "7", "\\frac{1}{2}"]; orm [0.25, 0.5, 0.5, 0.75]; prm [0.875, 0.125, 0.25, 0.5]

Scores are dyadic fractions, so sums compare exactly. With 4 samples, C(4, 1) = 4, C(4, 2) = 6 and C(4, 4) = 1
subsets are all no more than the default 20, so every N is averaged over all its subsets: exact.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from e2h.data.errors import DataError
from e2h.cli.report import main
from e2h.eval.report import build_report, format_markdown
from e2h.eval.reranking import (
    GradingCache,
    ProblemSamples,
    accuracy_at_n,
    accuracy_by_subset,
    best_of_n,
    majority_vote,
    ns_up_to,
    parse_method,
    subset_rng,
    subsets,
    weighted_vote,
)

HALF_SPELLINGS = ("\\frac12", "0.5", "\\frac{1}{2}")

A = ProblemSamples(
    problem_id="A",
    level=1,
    gold="2",
    answers=("2", "2", "5", None),
    scores={"orm": (0.5, 0.25, 0.875, 1.0), "prm": (0.75, 0.5, 0.25, 0.125)},
)
B = ProblemSamples(
    problem_id="B",
    level=4,
    gold="\\frac12",
    answers=("0.5", "7", "7", "\\frac{1}{2}"),
    scores={"orm": (0.25, 0.5, 0.5, 0.75), "prm": (0.875, 0.125, 0.25, 0.5)},
)


def close(value: float, fraction: Fraction) -> bool:
    return math.isclose(value, float(fraction), abs_tol=1e-12)


# --------------------------------------------------------------------------------------------------
# Choosing one answer
# --------------------------------------------------------------------------------------------------


def test_majority_groups_equivalent_spellings_and_ignores_missing_answers():
    # 1/2 spelled three ways (3 votes) beats "3" (2 votes); two None answers would win if None voted.
    answers = ["\\frac12", "3", "0.5", "3", "\\frac{1}{2}", None, None]
    assert majority_vote(answers) == "\\frac12"  # the group's first spelling


def test_majority_tie_goes_to_the_group_seen_first():
    assert majority_vote(["3", "0.5", "\\frac12", "3"]) == "3"  # 2 votes each; "3" first
    assert majority_vote(["0.5", "3", "3", "\\frac12"]) == "0.5"  # same votes, 1/2 first
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None


def test_weighted_vote_sums_scores_per_equivalence_group():
    answers = ["3", "\\frac12", "0.5", "\\frac{1}{2}", None]
    # 1/2: 0.25 * 3 = 0.75 < "3": 0.9 -> "3" (majority would say 1/2); None's 5.0 never votes.
    assert weighted_vote(answers, [0.9, 0.25, 0.25, 0.25, 5.0]) == "3"
    # 1/2: 0.75 > "3": 0.625 -> 1/2, in its first spelling.
    assert weighted_vote(answers, [0.625, 0.25, 0.25, 0.25, 5.0]) == "\\frac12"


def test_weighted_vote_tie_goes_to_the_group_seen_first():
    # 1/2: 0.25 + 0.25 = 0.5 == "3": 0.5
    assert weighted_vote(["0.5", "3", "\\frac12"], [0.25, 0.5, 0.25]) == "0.5"
    assert weighted_vote(["3", "0.5", "\\frac12"], [0.5, 0.25, 0.25]) == "3"
    assert weighted_vote([None], [1.0]) is None
    with pytest.raises(ValueError, match="2 answers but 1 scores"):
        weighted_vote(["1", "2"], [0.5])


def test_best_of_n_takes_the_single_best_sample():
    # The 1/2 group sums to 1.0 but its best sample (0.5) loses to "3" (0.6): no grouping here.
    assert best_of_n(["3", "0.5", "\\frac12"], [0.6, 0.5, 0.5]) == "3"
    # Tie at 0.75 between samples 1 and 3 -> the first, in its own spelling.
    assert best_of_n(["3", "0.5", None, "\\frac12"], [0.5, 0.75, 0.25, 0.75]) == "0.5"
    # The best-scored sample has no answer: best-of-N answers nothing (no fall-back to the runner-up).
    assert best_of_n(["3", "0.5", None, "\\frac12"], [0.5, 0.75, 0.9, 0.75]) is None
    assert best_of_n([], []) is None


# --------------------------------------------------------------------------------------------------
# N values, methods, subsets
# --------------------------------------------------------------------------------------------------


def test_ns_up_to():
    assert ns_up_to(1) == [1]
    assert ns_up_to(2) == [1, 2]
    assert ns_up_to(5) == [1, 2, 4, 5]
    assert ns_up_to(12) == [1, 2, 4, 8, 12]
    assert ns_up_to(16) == [1, 2, 4, 8, 16]
    with pytest.raises(ValueError):
        ns_up_to(0)


def test_parse_method():
    assert parse_method("majority") == ("majority", None)
    assert parse_method("best_of_n:prm") == ("best_of_n", "prm")
    for bad in ("weighted", "weighted:", "majority:orm", "vote"):
        with pytest.raises(ValueError, match="unknown re-ranking method"):
            parse_method(bad)


def test_subsets_enumerate_when_cheaper_and_sample_otherwise():
    rng = subset_rng(0, "p", 4)
    assert list(subsets(4, 4, 20, rng)) == [(0, 1, 2, 3)]  # n == N_max: the one full set
    assert len(list(subsets(4, 2, 20, rng))) == 6  # C(4, 2) = 6 <= 20: all of them
    drawn = list(subsets(16, 4, 20, subset_rng(0, "p", 4)))  # C(16, 4) = 1820 > 20: 20 random ones
    assert len(drawn) == 20
    for s in drawn:
        assert len(set(s)) == 4 and list(s) == sorted(s) and all(0 <= i < 16 for i in s)
    assert drawn == list(subsets(16, 4, 20, subset_rng(0, "p", 4)))  # same seed, same subsets
    assert drawn != list(subsets(16, 4, 20, subset_rng(1, "p", 4)))
    assert drawn != list(subsets(16, 4, 20, subset_rng(0, "q", 4)))
    with pytest.raises(ValueError, match="outside 1..4"):
        list(subsets(4, 5, 20, rng))


def test_subset_seed_does_not_depend_on_the_process_hash_salt():
    code = "from e2h.eval.reranking import subset_rng, subsets; print(list(subsets(16, 4, 3, subset_rng(7, 'p', 4))))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": salt},
            capture_output=True, text=True, check=True,
        ).stdout
        for salt in ("1", "2")
    }
    assert outputs == {str(list(subsets(16, 4, 3, subset_rng(7, "p", 4)))) + "\n"}


# --------------------------------------------------------------------------------------------------
# Accuracy against N (exact: every subset)
# --------------------------------------------------------------------------------------------------


def test_mean_and_n1_are_the_fraction_of_correct_samples():
    for problem in (A, B):  # 2 of 4 samples correct in both
        for method in ("mean", "majority", "weighted:orm", "best_of_n:prm", "pass"):
            assert accuracy_at_n([problem], method, 1) == 0.5
    assert accuracy_at_n([A], "mean", 4) == 0.5  # the baseline does not move with N


def test_majority_at_n_problem_a():
    # N=2, the 6 pairs of ["2","2","5",None]: {0,1} 2, {0,2} tie -> 2, {0,3} 2, {1,2} tie -> 2, {1,3} 2, {2,3} 5
    assert close(accuracy_at_n([A], "majority", 2), Fraction(5, 6))
    # N=3: every triple holds a "2" that is first or not outvoted -> 4/4
    assert accuracy_at_n([A], "majority", 3) == 1.0
    assert accuracy_at_n([A], "majority", 4) == 1.0


def test_majority_at_n_problem_b_with_equivalent_spellings():
    # ["0.5","7","7","\frac{1}{2}"]: {0,1} tie -> 0.5 ok, {0,2} ok, {0,3} ok, {1,2} 7, {1,3} tie -> 7, {2,3} tie -> 7
    assert close(accuracy_at_n([B], "majority", 2), Fraction(3, 6))
    assert accuracy_at_n([B], "majority", 4) == 1.0  # 2-2 tie, the 1/2 group first
    # averaged over the problems: (5/6 + 3/6) / 2
    assert close(accuracy_at_n([A, B], "majority", 2), Fraction(2, 3))


def test_weighted_and_best_of_n_at_n():
    # A, orm [0.5, 0.25, 0.875, 1.0]: N=2 pairs {0,1} 2 ok, {0,2} 5 (0.875 > 0.5), {0,3} 2 (None does not vote),
    # {1,2} 5, {1,3} 2, {2,3} 5 -> 3/6; N=3 only {0,1,3} ok -> 1/4; N=4: 2 has 0.75 < 5 has 0.875 -> 0
    assert close(accuracy_at_n([A], "weighted:orm", 2), Fraction(3, 6))
    assert close(accuracy_at_n([A], "weighted:orm", 3), Fraction(1, 4))
    assert accuracy_at_n([A], "weighted:orm", 4) == 0.0
    # best-of-N: N=2 only {0,1} picks a "2"; the None sample (1.0) wins every pair it is in; N=4 it wins -> 0
    assert close(accuracy_at_n([A], "best_of_n:orm", 2), Fraction(1, 6))
    assert accuracy_at_n([A], "best_of_n:orm", 4) == 0.0
    # B, orm [0.25, 0.5, 0.5, 0.75]: N=4 weighted 1/2: 1.0 ties 7: 1.0 -> 1/2 first; best: sample 3 "\frac{1}{2}"
    assert accuracy_at_n([B], "weighted:orm", 4) == 1.0
    assert accuracy_at_n([B], "best_of_n:orm", 4) == 1.0
    # best N=2: {0,1} 7, {0,2} 7, {0,3} ok, {1,2} tie -> sample 1 "7", {1,3} ok, {2,3} ok -> 3/6
    assert close(accuracy_at_n([B], "best_of_n:orm", 2), Fraction(3, 6))
    with pytest.raises(ValueError, match="needs scores from 'rm'"):
        accuracy_at_n([A], "weighted:rm", 2)


def test_pass_at_n():
    # A: a pair misses only when it is {2,3}: 5/6; B: only {1,2}: 5/6
    assert close(accuracy_at_n([A], "pass", 2), Fraction(5, 6))
    assert close(accuracy_at_n([B], "pass", 2), Fraction(5, 6))
    assert accuracy_at_n([A, B], "pass", 3) == 1.0  # any 3 of 4 include a correct one


def test_accuracy_by_subset_splits_by_level_and_group():
    result = accuracy_by_subset([A, B], "majority", 2)
    assert set(result) == {"level_1", "easy", "level_4", "hard", "all"}
    assert close(result["easy"][0], Fraction(5, 6)) and result["easy"][1] == 1
    assert close(result["level_4"][0], Fraction(1, 2)) and result["level_4"][1] == 1
    assert close(result["all"][0], Fraction(2, 3)) and result["all"][1] == 2


def test_random_subsets_are_deterministic_by_seed():
    # four "1"s first, then eight distinct wrong answers
    p = ProblemSamples("r", 3, "1", ("1",) * 4 + tuple(str(10 + i) for i in range(8)))
    # C(12, 3) = 220 > 7: 7 random subsets, so each value is a multiple of 1/7
    values = {seed: accuracy_at_n([p], "majority", 3, num_subsets=7, seed=seed) for seed in range(6)}
    assert values == {seed: accuracy_at_n([p], "majority", 3, num_subsets=7, seed=seed) for seed in range(6)}
    assert all(close(v * 7, Fraction(round(v * 7))) for v in values.values())
    assert len(set(values.values())) > 1  # the seed does change the subsets
    # exhaustive: all 220 triples. The wrong answers never repeat, so a triple with two "1"s votes "1", and one
    # with a single "1" is a three-way tie won by the "1", which comes first (indices 0-3). So a triple is
    # right exactly when it holds a "1": 1 - C(8, 3) / C(12, 3) = 1 - 56/220
    assert close(accuracy_at_n([p], "majority", 3, exhaustive=True), Fraction(164, 220))


def test_grader_is_called_once_per_ordered_pair():
    calls: list[tuple[str, str]] = []

    def equal(pred: str, ref: str) -> bool:
        calls.append((pred, ref))
        return pred == ref

    p = ProblemSamples("c", 1, "a", ("a", "b", "a", "b"), {"s": (0.5, 0.25, 0.125, 1.0)})
    cache = GradingCache(equal)
    for method in ("mean", "majority", "weighted:s", "best_of_n:s", "pass"):
        for n in (1, 2, 3, 4):
            accuracy_at_n([p], method, n, num_subsets=50, exhaustive=True, cache=cache)
    # only ("a","a"), ("b","a"), ("a","b"), ("b","b") can ever be asked, however many subsets
    assert sorted(calls) == [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")]
    assert cache.calls == 4
    accuracy_at_n([p], "majority", 2, cache=cache)
    assert cache.calls == 4


# --------------------------------------------------------------------------------------------------
# The command, end to end
# --------------------------------------------------------------------------------------------------


def _sample_rows() -> list[dict]:
    rows = []
    for p in (A, B):
        for i, answer in enumerate(p.answers):
            rows.append(
                {"problem_id": p.problem_id, "level": p.level, "sample_index": i, "prompt": "q", "completion": "s",
                 "answer": answer, "gold": p.gold, "correct": None, "num_tokens": 3}
            )
    for i in range(2):  # a problem without gold: left out of the accuracies, but still scored
        rows.append({"problem_id": "C", "level": 2, "sample_index": i, "prompt": "q", "completion": "s",
                     "answer": "9", "gold": None, "correct": None, "num_tokens": 3})
    return rows


def _scored_rows(name: str) -> list[dict]:
    scores = {"A": A.scores[name], "B": B.scores[name], "C": (0.5, 0.5)}
    return [
        {**row, "steps": ["s"], "step_scores": [scores[row["problem_id"]][row["sample_index"]]],
         "score": scores[row["problem_id"]][row["sample_index"]]}
        for row in _sample_rows()
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    return (
        _write_jsonl(tmp_path / "samples.jsonl", _sample_rows()),
        _write_jsonl(tmp_path / "orm.jsonl", _scored_rows("orm")),
        _write_jsonl(tmp_path / "prm.jsonl", _scored_rows("prm")),
    )


# The "all" table, by hand (N = 1, 2, 4; N=1 is 50% everywhere, each problem having 2 of 4 right):
#   majority      (5/6 + 3/6)/2 = 66.7   (1 + 1)/2 = 100
#   weighted:orm  (3/6 + 3/6)/2 = 50.0   (0 + 1)/2 = 50
#   best_of_n:orm (1/6 + 3/6)/2 = 33.3   (0 + 1)/2 = 50
#   weighted:prm  A: only {2,3} picks 5 -> 5/6; B: only {1,2} picks 7 -> 5/6; N=4 both right
#   best_of_n:prm A: {2,3} -> sample 2 "5" -> 5/6; B: {1,2} -> sample 2 "7" -> 5/6; N=4 both right
#   pass          5/6 and 5/6 -> 83.3; 100
EXPECTED_ALL = """\
## all (2 problems)

| method | N=1 | N=2 | N=4 |
|---|---:|---:|---:|
| mean | 50.0% | 50.0% | 50.0% |
| majority | 50.0% | 66.7% | 100.0% |
| weighted:orm | 50.0% | 50.0% | 50.0% |
| best_of_n:orm | 50.0% | 33.3% | 50.0% |
| weighted:prm | 50.0% | 83.3% | 100.0% |
| best_of_n:prm | 50.0% | 83.3% | 100.0% |
| pass | 50.0% | 83.3% | 100.0% |
"""


def test_report_end_to_end(files, tmp_path, capsys):
    samples, orm, prm = files
    out, tb = tmp_path / "out", tmp_path / "tb"
    code = main(["--samples", str(samples), "--scores", f"orm={orm}", f"prm={prm}", "--out", str(out),
                 "--tensorboard", str(tb)])
    assert code == 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert capsys.readouterr().out == markdown
    assert EXPECTED_ALL in markdown
    # problem A alone (level 1 = easy): weighted:orm at N=4 is 0 (see test_weighted_and_best_of_n_at_n)
    easy = markdown.split("## easy (1 problems)")[1].split("##")[0]
    assert "| weighted:orm | 50.0% | 50.0% | 0.0% |" in easy
    assert "| best_of_n:orm | 50.0% | 16.7% | 0.0% |" in easy
    assert "N_max: 4" in markdown and "seed: 0" in markdown and "subsets per N: 20" in markdown
    assert "problems: level_1: 1, level_4: 1, easy: 1, hard: 1, all: 2" in markdown
    assert "left out: 1 problem(s) without a gold answer" in markdown
    assert [line.split(" (")[0] for line in markdown.splitlines() if line.startswith("## ")] == [
        "## level_1", "## level_4", "## easy", "## hard", "## all"
    ]

    csv_lines = (out / "report.csv").read_text(encoding="utf-8").splitlines()
    assert csv_lines[0] == "method,n,subset,accuracy,problems"
    assert len(csv_lines) == 1 + 7 * 3 * 5  # methods x N x subsets
    assert "pass,2,all,0.8333333333333334,2" in csv_lines  # (5/6 + 5/6) / 2
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert (data["n_max"], data["ns"], data["seed"], data["num_subsets"]) == (4, [1, 2, 4], 0, 20)
    assert data["scorers"] == {"orm": str(orm), "prm": str(prm)}
    assert {"method": "majority", "n": 4, "subset": "hard", "accuracy": 1.0, "problems": 1} in data["rows"]

    assert (out / "accuracy_vs_n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    events = list(tb.glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert b"rerank/level_4/weighted:orm" in events[0].read_bytes()


def test_report_ns_and_seed_options(files):
    samples, orm, _ = files
    report = build_report(samples, {"orm": orm}, ns=[2, 1, 2], num_subsets=3, seed=5)
    assert report.ns == [1, 2]  # sorted, without repeats
    # C(4, 2) = 6 > 3: three random pairs per problem -> each problem's value is a multiple of 1/3
    value = report.accuracy("majority", 2, "easy")
    assert close(3 * value, Fraction(round(3 * value)))
    assert report.accuracy("mean", 1, "all") == 0.5
    assert "weighted:prm" not in report.methods
    with pytest.raises(DataError, match=r"N \[5\] outside 1..4"):
        build_report(samples, {}, ns=[5])


# --------------------------------------------------------------------------------------------------
# Bad input: clear errors naming file, line and field
# --------------------------------------------------------------------------------------------------


def test_unknown_problem_id_in_a_scored_file(files, capsys):
    samples, orm, _ = files
    rows = _scored_rows("orm")
    rows[2] = {**rows[2], "problem_id": "Z"}
    _write_jsonl(orm, rows)
    with pytest.raises(DataError, match=rf"{orm}:3: problem_id 'Z' is not in the samples file"):
        build_report(samples, {"orm": orm})
    assert main(["--samples", str(samples), "--scores", f"orm={orm}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {orm}:3: problem_id 'Z'") and "Traceback" not in err


def test_unknown_sample_index_in_a_scored_file(files):
    samples, orm, _ = files
    rows = _scored_rows("orm")
    rows[5] = {**rows[5], "sample_index": 9}
    _write_jsonl(orm, rows)
    with pytest.raises(DataError, match=rf"{orm}:6: problem_id 'B' has no sample_index 9"):
        build_report(samples, {"orm": orm})


def test_missing_score(files):
    samples, _, prm = files
    rows = _scored_rows("prm")
    del rows[3]["score"]
    _write_jsonl(prm, rows)
    with pytest.raises(DataError, match=rf"{prm}:4: scored sample is missing field\(s\) \['score'\]"):
        build_report(samples, {"prm": prm})


def test_bad_or_repeated_score(files):
    samples, orm, _ = files
    rows = _scored_rows("orm")
    _write_jsonl(orm, rows[:1] + [{**rows[1], "score": float("nan")}])
    with pytest.raises(DataError, match=rf"{orm}:2: field 'score' must be a finite number, got nan"):
        build_report(samples, {"orm": orm})
    _write_jsonl(orm, rows + rows[:1])
    with pytest.raises(DataError, match=rf"{orm}:11: .*sample_index 0 is scored twice \(first on line 1\)"):
        build_report(samples, {"orm": orm})


def test_scored_file_missing_samples(files):
    samples, orm, prm = files
    _write_jsonl(prm, _scored_rows("prm")[:-3] + _scored_rows("prm")[-2:])  # drop one line of 10
    with pytest.raises(DataError, match=r"scorer 'prm' .*: 1 of 10 samples .* have no score \(first: problem_id 'B' sample_index 3\)"):
        build_report(samples, {"orm": orm, "prm": prm})
    _write_jsonl(prm, _scored_rows("prm")[:6])
    with pytest.raises(DataError, match=r"scorer 'prm' .*: 4 of 10 samples"):
        build_report(samples, {"prm": prm})


def test_missing_file_and_bad_scores_argument(files, tmp_path, capsys):
    samples, _, _ = files
    assert main(["--samples", str(samples), "--scores", f"orm={tmp_path / 'nope.jsonl'}"]) == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--samples", str(samples), "--scores", "orm"])
    assert exc.value.code == 2
    assert "expected NAME=PATH" in capsys.readouterr().err


def test_markdown_of_a_report_without_scorers(files):
    samples, _, _ = files
    text = format_markdown(build_report(samples, {}, ns=[4]))
    assert "scorers: none" in text
    assert "| majority | 100.0% |" in text.split("## all")[1]


def test_exhaustive_report_is_exact_and_refuses_huge_enumerations(files, tmp_path, monkeypatch):
    samples, orm, _ = files
    # only 3 random subsets per N, but --exhaustive takes all 6 pairs: majority at N=2 on A is exactly 5/6
    report = build_report(samples, {"orm": orm}, ns=[2], num_subsets=3, exhaustive=True)
    assert close(report.accuracy("majority", 2, "easy"), Fraction(5, 6))
    monkeypatch.setattr("e2h.eval.report.MAX_EXHAUSTIVE_SUBSETS", 5)  # C(4, 2) = 6 > 5
    with pytest.raises(DataError, match=r"--exhaustive: N \[2\] give more than 5 subsets of 4 samples"):
        build_report(samples, {"orm": orm}, ns=[1, 2], exhaustive=True)
