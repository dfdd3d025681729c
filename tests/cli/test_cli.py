"""The `e2h` command: stages and data tools answer --help; the main job's data tools run."""

import subprocess
import sys
from pathlib import Path

import pytest

from e2h.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def run_e2h(*args):
    return subprocess.run([sys.executable, "-m", "e2h.cli", *args], capture_output=True, text=True, timeout=120)


def test_e2h_help_lists_every_stage_and_the_data_tools():
    result = run_e2h("--help")
    assert result.returncode == 0
    for stage in ("fit", "validate", "test", "predict", "e2h data --help"):
        assert stage in result.stdout


@pytest.mark.parametrize("stage", ["fit", "validate", "test", "predict"])
def test_each_stage_answers_help(stage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out


@pytest.mark.parametrize("tool", ["synth", "prm800k", "stats"])
def test_each_data_tool_answers_help(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", tool, "--help"])
    assert exit_info.value.code == 0
    assert f"e2h data {tool}" in capsys.readouterr().out


def test_unknown_data_tool_is_an_error(capsys):
    assert main(["data", "nope"]) == 2
    assert "unknown tool 'nope'" in capsys.readouterr().err


def test_synth_then_stats_is_the_main_job(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--train-per-level", "20", "--test-per-level", "5"]) == 0
    assert main(["data", "stats", str(tmp_path / "train.jsonl"), "--levels", "1", "2", "3", "--tokenizer", "char"]) == 0
    out = capsys.readouterr().out
    assert "loaded 100 records" in out
    assert "kept 60 after filtering" in out
    assert "by level: 1: 20, 2: 20, 3: 20" in out
    assert "padding waste at batch 16" in out


def test_cli_help_lists_the_stages(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(stage in out for stage in ("fit", "validate", "test", "predict"))


def test_a_misspelt_option_is_not_taken_as_a_prefix_of_another(capsys):
    # argparse would read --trainer.max_step as --trainer.max_steps and run 3 steps without a word
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs/tiny/sft.yaml"), "--trainer.max_step", "3", "--print_config"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --trainer.max_step 3" in capsys.readouterr().err


def test_a_list_given_on_the_command_line_replaces_the_configured_list(tmp_path):
    from e2h.cli.main import build_cli, lists_replace

    args = lists_replace(["--config", str(REPO / "configs/tiny/prm.yaml"),
                          "--data.init_args.train", "[{kind: steps, path: /data/steps.jsonl}]"])
    (source,) = build_cli(args, run=False).datamodule.sources["train"]
    # nothing inherited from the YAML's synthetic entry (levels 1-3, its error kinds)
    assert (source.kind, source.path, source.levels) == ("steps", "/data/steps.jsonl", None)
    assert lists_replace(["--trainer.callbacks+=x", "--a=[{b: 1}]"]) == ["--trainer.callbacks+=x", "--a", "null", "--a=[{b: 1}]"]
