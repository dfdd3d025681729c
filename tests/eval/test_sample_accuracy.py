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
    assert "| all | 3 | 3 | 33.3% | 33.3% | 66.7% |" in text
    assert "| easy | 1 | 3 | 66.7% | 100.0% | 100.0% |" in text
