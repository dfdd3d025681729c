"""`e2h data samples`: the accuracy table of a samples file."""


from e2h.cli.samples import main


def test_command_prints_the_table(tmp_path, capsys, write_jsonl, sample_line):
    path = write_jsonl(tmp_path / "s.jsonl", [sample_line("a", 2, 0, "4", "4")])
    assert main([str(path)]) == 0
    assert "| level_2 | 1 | 1 | 100.0% ± 0.0 | 100.0% ± 0.0 | 100.0% ± 0.0 | - | 0.0% | - |" in capsys.readouterr().out
