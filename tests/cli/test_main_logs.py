"""e2h's own INFO messages (the counts README promises) are shown by the command, one quiet line each."""

import logging

from e2h.cli.main import show_e2h_logs


def test_e2h_info_messages_reach_stderr_once(capsys):
    show_e2h_logs()
    show_e2h_logs()  # idempotent: one handler, one line per message
    logging.getLogger("e2h.training.callbacks").info("samples: 3 already complete in x.jsonl; skipping them")
    logging.getLogger("e2h.data.records").debug("not shown")
    assert capsys.readouterr().err == "e2h: samples: 3 already complete in x.jsonl; skipping them\n"


def test_a_missing_model_folder_is_one_line_naming_the_stage_that_writes_it(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from e2h.cli.main import main

    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the configs are relative to the checkout
    assert main(["test", "--config", "configs/tiny/eval.yaml", "--model.init_args.model", "runs/nowhere/sft/hf"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.init_args.model runs/nowhere/sft/hf: no such file or folder; it is the Hugging "
                          "Face export that a fit writes") and err.count("\n") == 1
    assert main(["test", "--config", "configs/tiny/eval.yaml"]) == 2 or Path("runs/tiny/sft/hf").exists()
    if not Path("runs/tiny/sft/hf").exists():
        assert "(e2h fit --config configs/tiny/sft.yaml)" in capsys.readouterr().err
