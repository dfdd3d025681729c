"""One option moves a run: ``--trainer.default_root_dir DIR`` takes a shipped config's TensorBoard logs,
checkpoints and Hugging Face export with it."""

import json
from pathlib import Path

from e2h.cli.main import main

REPO = Path(__file__).resolve().parents[2]
SMALL = json.dumps({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 2})
FEW = json.dumps({"train": 10, "test": 2})


def test_default_root_dir_moves_logs_checkpoints_and_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's own folder, runs/tiny/sft, would be created here
    moved = tmp_path / "elsewhere"
    main([
        "fit", "--config", str(REPO / "configs/tiny/sft.yaml"), "--trainer.default_root_dir", str(moved),
        "--trainer.max_steps", "2", "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--model.init_args.model_config", SMALL,
        "--data.init_args.train.synthetic_per_level", FEW, "--data.init_args.val.synthetic_per_level", FEW,
    ])
    assert list((moved / "tb").glob("version_*/events.out.tfevents.*"))
    assert (moved / "checkpoints" / "last.ckpt").is_file()
    assert (moved / "hf" / "config.json").is_file()
    assert not (tmp_path / "runs").exists()
