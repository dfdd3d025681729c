"""The samples' accuracy by level (e2h.eval.sample_accuracy), worked out by hand."""


import pytest

from e2h.data.samples import read_samples
from e2h.eval.sample_accuracy import format_summary, summarize


def test_summary_by_level_and_group_by_hand(tmp_path, write_jsonl, sample_line):
    rows = [
        # level 1: 2 of 3 samples right, majority right, pass right
        sample_line("a", 1, 0, "4", "4"), sample_line("a", 1, 1, "4.0", "4"), sample_line("a", 1, 2, "5", "4"),
        # level 4: 1 of 3 right, majority wrong (7 twice), pass right
        sample_line("b", 4, 0, "7", "1"), sample_line("b", 4, 1, "1", "1"), sample_line("b", 4, 2, "7", "1"),
        # level 5: no answer at all
        sample_line("c", 5, 0, None, "2"), sample_line("c", 5, 1, None, "2"), sample_line("c", 5, 2, None, "2"),
    ]
    table = summarize(read_samples(write_jsonl(tmp_path / "s.jsonl", rows)))
    assert (table["level_1"].sample_correct, table["level_1"].majority_correct, table["level_1"].any_correct) == (
        pytest.approx(2 / 3), 1, 1)
    assert (table["hard"].problems, table["hard"].majority_correct, table["hard"].any_correct) == (2, 0, 1)
    assert table["hard"].sample_correct == pytest.approx(1 / 3)
    text = format_summary(table)
    # standard errors over problems: sqrt(p (1 - p) / n), e.g. sqrt(1/3 * 2/3 / 3) = 27.2 points
    assert "| all | 3 | 3 | 33.3% ± 27.2 | 33.3% ± 27.2 | 66.7% ± 27.2 | - | 0.0% | - |" in text
    assert "| easy | 1 | 3 | 66.7% ± 47.1 | 100.0% ± 0.0 | 100.0% ± 0.0 | - | 0.0% | - |" in text


def test_synthetic_summary_counts_exact_solutions_clips_and_marks_chance(tmp_path, write_jsonl, sample_line):
    def line(pid, index, answer, solved, clipped):
        return {**sample_line(pid, 4, index, answer, "3"), "solved": solved, "clipped": clipped}

    rows = []
    for k in range(10):  # 10 level-4 problems, 2 samples each
        pid = f"synthetic/L4/test/{k}"
        if k == 0:  # right answer from right steps
            rows += [line(pid, 0, "3", True, False), line(pid, 1, "3", True, False)]
        elif k == 1:  # a lucky right answer from wrong steps, and a clipped sample
            rows += [line(pid, 0, "3", False, False), line(pid, 1, None, False, True)]
        else:
            rows += [line(pid, 0, "5", False, False), line(pid, 1, "6", False, True)]
    table = summarize(read_samples(write_jsonl(tmp_path / "s.jsonl", rows)))
    figures = table["level_4"].figures()
    # pass@2 = 2/10 (one of them lucky), solved pass@2 = 1/10; 9 of 20 samples clipped
    assert (figures["pass"], figures["solved_pass"], figures["clip_rate"]) == (0.2, 0.1, 0.45)
    # chance: a guess is right 10% of the time; pass@2 of a guesser 1 - 0.9^2 = 19%
    assert figures["chance"] == 0.1 and figures["pass_chance"] == pytest.approx(0.19)
    # sample accuracy 3/20 = 15% +- sqrt(.15 * .85 / 10) = 11.3 is within 2 SE of chance (noise, marked);
    # pass@2 20% +- 12.6 against 19% too
    assert "| level_4 | 10 | 2 | 15.0% ± 11.3† | 20.0% ± 12.6† | 20.0% ± 12.6† | 10.0% ± 9.5 | 45.0% | 10% / 19% |" in format_summary(table)


def test_undecided_gradings_are_counted_apart(tmp_path, write_jsonl, sample_line):
    rows = [{**sample_line("a", 4, 0, "x", "3"), "correct": False, "undecided": True},
            {**sample_line("a", 4, 1, "3", "3"), "correct": True, "undecided": False}]
    table = summarize(read_samples(write_jsonl(tmp_path / "s.jsonl", rows)))
    assert table["all"].figures()["undecided"] == 1
    assert "Grading undecided (math-verify's CPU budget ran out; counted wrong): 1 samples." in format_summary(table)
