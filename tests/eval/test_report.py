"""The re-ranking report, end to end from samples and scored files, and the `e2h data report` command (the hand-made
problems A and B of test_reranking.py, with their numbers worked out beside each table)."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import pytest

from e2h.cli.report import main
from e2h.data.errors import DataError
from e2h.eval.report import build_report, format_markdown
from e2h.eval.reranking import ProblemSamples


def close(value: float, fraction: Fraction) -> bool:
    return math.isclose(value, float(fraction), abs_tol=1e-12)


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


@pytest.fixture
def files(tmp_path, write_jsonl):
    return (
        write_jsonl(tmp_path / "samples.jsonl", _sample_rows()),
        write_jsonl(tmp_path / "orm.jsonl", _scored_rows("orm")),
        write_jsonl(tmp_path / "prm.jsonl", _scored_rows("prm")),
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


def test_unknown_problem_id_in_a_scored_file(files, capsys, write_jsonl):
    samples, orm, _ = files
    rows = _scored_rows("orm")
    rows[2] = {**rows[2], "problem_id": "Z"}
    write_jsonl(orm, rows)
    with pytest.raises(DataError, match=rf"{orm}:3: problem_id 'Z' is not in the samples file"):
        build_report(samples, {"orm": orm})
    assert main(["--samples", str(samples), "--scores", f"orm={orm}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {orm}:3: problem_id 'Z'") and "Traceback" not in err


def test_unknown_sample_index_in_a_scored_file(files, write_jsonl):
    samples, orm, _ = files
    rows = _scored_rows("orm")
    rows[5] = {**rows[5], "sample_index": 9}
    write_jsonl(orm, rows)
    with pytest.raises(DataError, match=rf"{orm}:6: problem_id 'B' has no sample_index 9"):
        build_report(samples, {"orm": orm})


def test_missing_score(files, write_jsonl):
    samples, _, prm = files
    rows = _scored_rows("prm")
    del rows[3]["score"]
    write_jsonl(prm, rows)
    with pytest.raises(DataError, match=rf"{prm}:4: scored sample is missing field\(s\) \['score'\]"):
        build_report(samples, {"prm": prm})


def test_bad_or_repeated_score(files, write_jsonl):
    samples, orm, _ = files
    rows = _scored_rows("orm")
    write_jsonl(orm, rows[:1] + [{**rows[1], "score": float("nan")}])
    with pytest.raises(DataError, match=rf"{orm}:2: field 'score' must be a finite number, got nan"):
        build_report(samples, {"orm": orm})
    write_jsonl(orm, rows + rows[:1])
    with pytest.raises(DataError, match=rf"{orm}:11: .*sample_index 0 is scored twice \(first on line 1\)"):
        build_report(samples, {"orm": orm})


def test_scored_file_missing_samples(files, write_jsonl):
    samples, orm, prm = files
    write_jsonl(prm, _scored_rows("prm")[:-3] + _scored_rows("prm")[-2:])  # drop one line of 10
    with pytest.raises(DataError, match=r"scorer 'prm' .*: 1 of 10 samples .* have no score \(first: problem_id 'B' sample_index 3\)"):
        build_report(samples, {"orm": orm, "prm": prm})
    write_jsonl(prm, _scored_rows("prm")[:6])
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
