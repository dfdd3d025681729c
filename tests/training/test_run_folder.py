"""One option moves a run: ``--trainer.default_root_dir DIR`` takes a shipped config's TensorBoard logs,
checkpoints and Hugging Face export with it."""

import json
import re
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


def _fit(root: Path, *extra: str) -> int:
    return main([
        "fit", "--config", str(REPO / "configs/tiny/sft.yaml"), "--trainer.default_root_dir", str(root),
        "--trainer.max_steps", "2", "--trainer.num_sanity_val_steps", "0", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--model.init_args.model_config", SMALL,
        "--data.init_args.train.synthetic_per_level", FEW, "--data.init_args.val.synthetic_per_level", FEW, *extra,
    ])


def test_a_second_fit_into_a_run_folder_is_refused_unless_it_resumes(tmp_path, capsys):
    root = tmp_path / "run"
    assert _fit(root) == 0
    first = (root / "checkpoints" / "last.ckpt").read_bytes()
    # a fresh second fit would have written last-v1.ckpt beside the first run's last.ckpt
    assert _fit(root) == 2
    assert re.search(r"^error: .* already holds checkpoints of an earlier run .*--ckpt_path .*last.ckpt",
                     capsys.readouterr().err, re.M)
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["last.ckpt"]
    assert (root / "checkpoints" / "last.ckpt").read_bytes() == first
    # resuming is how a run continues
    _fit(root, "--trainer.max_steps", "4", "--ckpt_path", str(root / "checkpoints" / "last.ckpt"))
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["last.ckpt"]


def test_existing_overwrite_starts_the_run_over(tmp_path):
    from e2h.training.run_folder import RunCheckpoint

    callback = RunCheckpoint(existing="overwrite", dirpath=str(tmp_path), save_last=True)
    (tmp_path / "last.ckpt").write_bytes(b"old run")
    from lightning.pytorch import Trainer

    trainer = Trainer(accelerator="cpu", logger=False, callbacks=[callback])
    callback._start_fresh(trainer)
    assert not list(tmp_path.iterdir())
