"""Checkpoints that are whole or absent.

Lightning's own save (`lightning.fabric.utilities.cloud_io._atomic_save`) writes through an fsspec transaction
whose temporary file lies in ``$TMPDIR``; when that is another filesystem than the run folder, the final move
is a copy, and a kill during it leaves a truncated ``last.ckpt`` (0 bytes in the worst case), while the
temporary file stays behind. `AtomicCheckpointIO` writes the temporary file beside its destination, fsyncs it
and renames it over the destination: a reader sees the old checkpoint or the new one, never a part.

Loading checks the file first: an empty or truncated checkpoint gets an error that names it and the newest
complete checkpoint beside it (`newest_complete_checkpoint`), instead of a bare ``EOFError``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import TorchCheckpointIO

from e2h.data.errors import UserError

TMP_PREFIX = ".tmp-"


class IncompleteCheckpointError(UserError, RuntimeError):
    """A checkpoint file that is empty or truncated (e.g. a save killed under another writer)."""


def is_complete_checkpoint(path: str | Path) -> bool:
    """Whether `path` is a whole `torch.save` file: a zip archive whose central directory (written last) reads.
    Cheap: only the file's end is read, not its tensors."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def newest_complete_checkpoint(folder: str | Path) -> Path | None:
    """The most recently written complete ``*.ckpt`` in `folder`, or None."""
    candidates = sorted(Path(folder).glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in candidates if is_complete_checkpoint(p)), None)


def check_checkpoint(path: str | Path) -> None:
    """Raise `IncompleteCheckpointError` naming `path`, its size and the newest complete checkpoint beside it,
    when `path` is not a complete checkpoint."""
    path = Path(path)
    if not path.is_file() or is_complete_checkpoint(path):
        return  # a missing file gets Lightning's own error
    newest = newest_complete_checkpoint(path.parent)
    advice = (f"the newest complete checkpoint there is {newest}: resume with --ckpt_path {newest}" if newest
              else "there is no complete checkpoint beside it: start the run again without --ckpt_path")
    raise IncompleteCheckpointError(
        f"{path} is not a complete checkpoint ({path.stat().st_size} bytes; a save was cut off); {advice}"
    )


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files that a killed save left in `folder`."""
    for tmp in Path(folder).glob(f"{TMP_PREFIX}*"):
        tmp.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to a temporary file in the destination folder, fsync, rename (see the module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:  # the rename itself survives a crash once the folder's entry is on disk
            os.fsync(directory)
        finally:
            os.close(directory)

    def load_checkpoint(self, path: str | os.PathLike, *args: Any, **kwargs: Any) -> dict[str, Any]:
        check_checkpoint(path)
        return super().load_checkpoint(path, *args, **kwargs)
