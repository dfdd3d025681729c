"""Checkpoints are whole or absent: written beside their destination and renamed, never half-written (even when
$TMPDIR is another filesystem), no temporary file left behind; an empty or cut-off checkpoint gets an error that
names it and the newest complete one."""

import pytest
import torch
from lightning.pytorch import Trainer

from e2h.training.checkpoint_io import (
    AtomicCheckpointIO,
    IncompleteCheckpointError,
    is_complete_checkpoint,
    newest_complete_checkpoint,
)
from e2h.training.run_folder import RunCheckpoint


def test_a_save_writes_beside_the_destination_and_leaves_nothing_else(tmp_path, monkeypatch):
    elsewhere = tmp_path / "tmpdir"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))  # Lightning's own save stages its file there
    path = tmp_path / "run" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 3, "w": torch.ones(4)}, path)
    assert is_complete_checkpoint(path) and torch.load(path)["global_step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"] and not list(elsewhere.iterdir())


def test_a_save_killed_midway_keeps_the_old_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)

    def killed(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill during the write looks like to the writer

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["global_step"] == 1 and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_resuming_from_an_empty_checkpoint_names_it_and_the_newest_complete_one(tmp_path, tiny_model_dir,
                                                                              problems_data):
    from e2h.modules import GeneratorModule

    folder = tmp_path / "checkpoints"
    module = GeneratorModule(model=tiny_model_dir, budget_check="warn")
    trainer = Trainer(accelerator="cpu", max_steps=2, logger=False, enable_progress_bar=False, limit_val_batches=0,
                      callbacks=[RunCheckpoint(dirpath=folder, every_n_train_steps=2, save_last=True)])
    trainer.fit(module, datamodule=problems_data(tokenizer=None))
    (folder / "last.ckpt").write_bytes(b"")  # a save cut off by a kill
    good = folder / "epoch=0-step=2.ckpt"
    assert newest_complete_checkpoint(folder) == good
    trainer = Trainer(accelerator="cpu", max_steps=4, logger=False, enable_progress_bar=False, limit_val_batches=0,
                      callbacks=[RunCheckpoint(dirpath=folder, every_n_train_steps=2, save_last=True)])
    with pytest.raises(IncompleteCheckpointError, match=rf"last.ckpt is not a complete checkpoint \(0 bytes.*{good.name}"):
        trainer.fit(GeneratorModule(model=tiny_model_dir, budget_check="warn"),
                    datamodule=problems_data(tokenizer=None), ckpt_path=str(folder / "last.ckpt"))
