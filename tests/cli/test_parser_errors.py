"""A bad config value is one line naming the option, the value, what it accepts and where it was set; a run
that fails before its first step leaves no empty TensorBoard folder behind."""

from pathlib import Path

import pytest

from e2h.cli.main import main
from e2h.cli.parser_errors import condense

REPO = Path(__file__).resolve().parents[2]
SFT = str(REPO / "configs/tiny/sft.yaml")


def _error_lines(capsys, *args) -> list[str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", SFT, *args, "--print_config"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" not in err and "Union subtypes" not in err
    return err.splitlines()


def test_a_bad_value_in_a_config_file_names_the_option_the_file_and_the_line(tmp_path, capsys):
    bad = tmp_path / "fast.yaml"
    bad.write_text("model:\n  init_args:\n    optimizer:\n      init_args:\n        lr: fast\n")
    lines = _error_lines(capsys, "--config", str(bad))
    assert lines[0] == (f"error: model.init_args.optimizer.init_args.lr: got 'fast'; expected one of: float, Tensor "
                        f"(in {bad}, line 5)")
    assert len(lines) == 2 and "fit --help" in lines[1]


def test_a_bad_value_on_the_command_line_says_so(capsys):
    lines = _error_lines(capsys, "--data.init_args.batch_size", "many")
    assert lines[0] == "error: data.init_args.batch_size: got 'many'; expected int (on the command line)"


def test_a_nested_null_on_the_command_line_explains_itself(capsys):
    # jsonargparse hands a null inside a nested option to the inner parser as the text 'None'
    (first, _) = _error_lines(capsys, "--data.init_args.train.levels", "null")
    assert first.startswith("error: data.init_args.train.init_args.levels: got 'None'; expected one of: list[int], NoneType")
    assert "write the value out" in first


def test_an_unknown_argument_of_the_chosen_class_is_named(capsys):
    (first, _) = _error_lines(capsys, "--model.init_args.nonsense", "3")
    assert first == ("error: model.init_args.nonsense: e2h.modules.GeneratorModule has no such argument "
                     "(on the command line)")


def test_a_message_without_a_type_tree_is_kept_as_it_is():
    assert condense("unrecognized arguments: --x 1") == (None, "unrecognized arguments: --x 1")


def test_a_fit_that_fails_before_its_first_step_leaves_no_log_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cut.jsonl").write_text('{"problem": "1+1", "answer": "2"\n')
    assert main(["fit", "--config", SFT, "--trainer.max_steps", "2", "--data.init_args.train.source", "cut.jsonl"]) == 2
    assert "cut.jsonl:1:33: malformed JSON (Expecting ',' delimiter; the line ends at column 32: cut short?)" in (
        capsys.readouterr().err)
    assert not (tmp_path / "runs/tiny/sft/tb").exists()
