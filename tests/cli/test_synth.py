"""`e2h data synth`: writes the benchmark's files and reports them; impossible requests are refused."""

from __future__ import annotations

import pytest

from e2h.cli.synth import main


def test_main_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "restates what remains" in capsys.readouterr().out


def test_main_writes_and_reports(tmp_path, capsys) -> None:
    out = tmp_path / "synth"
    args = ["--out", str(out), "--train-per-level", "4", "--test-per-level", "2", "--levels", "1", "2"]
    assert main([*args, "--seed", "3", "--wrong-fraction", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert f"{out / 'train.jsonl'}: 8 problems (L1 4, L2 4)" in printed
    assert f"{out / 'test_steps.jsonl'}: 4 solutions (L1 2, L2 2; 1 with a wrong step)" in printed
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "test_steps.jsonl", "train.jsonl", "train_steps.jsonl"]


def test_main_refuses_an_impossible_request(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "x"), "--train-per-level", "4000", "--test-per-level", "1", "--levels", "1"])
    assert exit_info.value.code == 2
    assert "level 1 has at most 4000" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_main_writes_the_pointer_chain_benchmark(tmp_path, capsys) -> None:
    out = tmp_path / "chains"
    args = ["--out", str(out), "--train-per-level", "3", "--test-per-level", "2", "--levels", "1", "5"]
    assert main([*args, "--benchmark", "chains", "--fillers", "0.5"]) == 0
    assert f"{out / 'test.jsonl'}: 4 problems (L1 2, L5 2)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["test.jsonl", "train.jsonl"]
    with pytest.raises(SystemExit):
        main([*args, "--benchmark", "chains", "--levels", "7"])
    assert "level must be an integer in 1..6" in capsys.readouterr().err
