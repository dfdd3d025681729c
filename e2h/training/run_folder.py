"""A run's folder: everything a training run writes lives under the trainer's ``default_root_dir``, so
``--trainer.default_root_dir DIR`` moves all of it, as Lightning's own defaults do::

    DIR/tb/version_N/      TensorBoard logs and the resolved config (`run_logger`, the CLI's default logger)
    DIR/checkpoints/       checkpoints, last.ckpt among them (`RunCheckpoint`)
    DIR/hf/                the trained model as a Hugging Face folder (`e2h.training.callbacks.ExportHF`)

Each is derived when the trainer is known; a path given explicitly still wins.
"""

from __future__ import annotations

import glob
import os
import shutil
from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from e2h.data.errors import UserError
from e2h.training.checkpoint_io import AtomicCheckpointIO, remove_stale_temporaries

LOGS, CHECKPOINTS, EXPORT = "tb", "checkpoints", "hf"


class RunExistsError(UserError, FileExistsError):
    """A fresh fit into a run folder that holds an earlier run's checkpoints."""


def run_logger(root: str | None) -> TensorBoardLogger:
    """TensorBoard logging to ``root/tb`` (Lightning's default logger would use ``root/lightning_logs``)."""
    return TensorBoardLogger(save_dir=root or os.getcwd(), name=LOGS)


def remove_unused_log_folder(trainer: Trainer) -> None:
    """Remove the TensorBoard version folder of a run that failed before its first optimizer step, when it holds
    nothing a user could read (event files of the hyperparameters, the saved config): otherwise each failed
    attempt leaves an empty ``tb/version_N`` and TensorBoard lists runs that never ran. A resumed run, or one
    that got past its first step, keeps its folder."""
    logger = trainer.logger
    if (not isinstance(logger, TensorBoardLogger) or not trainer.is_global_zero or trainer.global_step > 0
            or trainer.ckpt_path is not None):
        return
    folder = logger.log_dir
    if not os.path.isdir(folder):
        return
    if all(n.startswith("events.out.tfevents.") or n in ("hparams.yaml", "config.yaml") for n in os.listdir(folder)):
        shutil.rmtree(folder, ignore_errors=True)
        parent = os.path.dirname(folder)
        if os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)


def run_path(trainer: Trainer, name: str) -> str:
    """``name`` inside the run's folder."""
    return os.path.join(trainer.default_root_dir, name)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, saving to ``default_root_dir/checkpoints`` unless `dirpath` is given (the
    stock callback would save beside the logger's versioned folder, where a resumed run would not look).

    Checkpoints are written atomically (`e2h.training.checkpoint_io.AtomicCheckpointIO`, where the strategy
    saves through plain `torch.save`; FSDP and DeepSpeed write their own sharded folders), and temporary files a
    killed save left behind are removed."""

    def __init__(self, *args: Any, existing: Literal["refuse", "overwrite"] = "refuse", **kwargs: Any) -> None:
        """`existing`: what a fit that does not resume (no ``--ckpt_path``) does when the checkpoint folder
        already holds an earlier run's checkpoints: ``refuse`` (stop, saying how to resume or start over) or
        ``overwrite`` (delete them first). Without this rule a second fit would write ``last-v1.ckpt`` beside the
        first run's ``last.ckpt``, and a later resume would continue the wrong run. Other arguments are
        ModelCheckpoint's."""
        if existing not in ("refuse", "overwrite"):
            raise ValueError(f"existing must be 'refuse' or 'overwrite', got {existing!r}")
        super().__init__(*args, **kwargs)
        self.existing = existing

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = run_path(trainer, CHECKPOINTS)
        strategy = trainer.strategy
        if type(strategy.checkpoint_io) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()
        if trainer.is_global_zero and os.path.isdir(self.dirpath):
            remove_stale_temporaries(self.dirpath)
        super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # here, not in setup: the checkpoint a fit resumes from is known only once it has been restored
        if trainer.ckpt_path is None:
            self._start_fresh(trainer)
        super().on_fit_start(trainer, pl_module)

    def _start_fresh(self, trainer: Trainer) -> None:
        earlier = sorted(glob.glob(os.path.join(self.dirpath, "*.ckpt")))
        if not earlier:
            return
        if self.existing == "refuse":
            last = os.path.join(self.dirpath, "last.ckpt")
            raise RunExistsError(
                f"{self.dirpath} already holds checkpoints of an earlier run ({', '.join(map(os.path.basename, earlier))}). "
                f"Resume it with --ckpt_path {last if os.path.exists(last) else earlier[-1]}; or start over in another "
                "folder with --trainer.default_root_dir DIR; or delete the folder; or set this callback's "
                "`existing: overwrite` in the config."
            )
        if trainer.is_global_zero:
            for path in earlier:
                os.remove(path)
        trainer.strategy.barrier("e2h.RunCheckpoint.overwrite")
