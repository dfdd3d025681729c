"""A run's folder: everything a training run writes lives under the trainer's ``default_root_dir``, so
``--trainer.default_root_dir DIR`` moves all of it, as Lightning's own defaults do::

    DIR/tb/version_N/      TensorBoard logs and the resolved config (`run_logger`, the CLI's default logger)
    DIR/checkpoints/       checkpoints, last.ckpt among them (`RunCheckpoint`)
    DIR/hf/                the trained model as a Hugging Face folder (`e2h.training.callbacks.ExportHF`)

Each is derived when the trainer is known; a path given explicitly still wins.
"""

from __future__ import annotations

import os

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

LOGS, CHECKPOINTS, EXPORT = "tb", "checkpoints", "hf"


def run_logger(root: str | None) -> TensorBoardLogger:
    """TensorBoard logging to ``root/tb`` (Lightning's default logger would use ``root/lightning_logs``)."""
    return TensorBoardLogger(save_dir=root or os.getcwd(), name=LOGS)


def run_path(trainer: Trainer, name: str) -> str:
    """``name`` inside the run's folder."""
    return os.path.join(trainer.default_root_dir, name)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, saving to ``default_root_dir/checkpoints`` unless `dirpath` is given (the
    stock callback would save beside the logger's versioned folder, where a resumed run would not look)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = run_path(trainer, CHECKPOINTS)
        super().setup(trainer, pl_module, stage)
