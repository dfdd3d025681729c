"""Callbacks: the samples and scores writers (resumable JSONL), training throughput, Hugging Face export at fit
end, evaluation metrics as JSON."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from e2h.data.errors import UserError
from e2h.data.files import atomic_write_jsonl, atomic_write_text, read_jsonl
from e2h.training.provenance import differences, provenance
from e2h.training.run_folder import EXPORT, run_path

log = logging.getLogger(__name__)


class OutputMismatchError(UserError, ValueError):
    """An existing output file was produced by another model, other settings or other data."""


class TrainingDiverged(UserError, RuntimeError):
    """The training loss diverged; the model was not exported."""


def complete_problems(rows: Sequence[dict[str, Any]], num_samples: int) -> set[str]:
    """Problem ids that have all `num_samples` samples (distinct sample indices)."""
    seen: dict[str, set[int]] = {}
    for r in rows:
        seen.setdefault(r["problem_id"], set()).add(r["sample_index"])
    return {pid for pid, idx in seen.items() if len(idx) >= num_samples}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a samples file; a torn last line (a run killed mid-write) is dropped, not an error."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
    return [row for _, row in read_jsonl(path)]


def show_on_progress_bar(trainer: Trainer, text: str) -> None:
    """Show `text` on the predict progress bar, whichever Lightning uses (Rich when installed, else tqdm)."""
    bar = trainer.progress_bar_callback
    if bar is None or bar.is_disabled:
        return
    if getattr(bar, "predict_progress_bar_id", None) is not None and getattr(bar, "progress", None) is not None:
        bar.progress.update(bar.predict_progress_bar_id, description=f"Predicting: {text}")
    elif getattr(bar, "predict_progress_bar", None) is not None:
        bar.predict_progress_bar.set_postfix_str(text)


class SampleWriter(BasePredictionWriter):
    """Writes `e2h predict` samples as JSONL: one line per sample, per-rank files merged at the end.

    Resuming: problems whose N samples are already in the output (merged or per-rank files) are skipped,
    so a stopped run continues without duplicating lines.

    What counts as done and how the data module is told to skip it are the hooks `done_units`, `unit_of`
    and `skip_done`; `ScoreWriter` overrides them to resume scoring line by line.
    """

    what = "samples"  # in log lines
    unit_name = "problems"  # on the progress bar

    def __init__(self, output: str = "runs/samples.jsonl", on_change: Literal["refuse", "restart"] = "refuse") -> None:
        """`on_change`: what a run does when `output` exists but was produced by another model, other settings
        or other data (`e2h.training.provenance`): ``refuse`` (stop, showing the differences) or ``restart``
        (delete the old file and start it over)."""
        super().__init__(write_interval="batch")
        if on_change not in ("refuse", "restart"):
            raise ValueError(f"on_change must be 'refuse' or 'restart', got {on_change!r}")
        self.output = Path(output)
        self.on_change = on_change
        self._tokens = 0
        self._units = 0
        self._start = 0.0

    def rank_file(self, rank: int) -> Path:
        return self.output.with_name(f"{self.output.stem}.rank{rank}{self.output.suffix}")

    @property
    def provenance_file(self) -> Path:
        return self.output.with_name(self.output.name + ".provenance.json")

    def _outputs(self) -> list[Path]:
        ranks = sorted(self.output.parent.glob(f"{self.output.stem}.rank*{self.output.suffix}"))
        return [p for p in [self.output, *ranks] if p.exists()]

    def _check_provenance(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Continue an existing output only if the same model, settings and data produced it (see
        `e2h.training.provenance`); record what produces it now."""
        record = provenance(pl_module, trainer.datamodule)
        existing = self._outputs()
        if existing:
            old = json.loads(self.provenance_file.read_text()) if self.provenance_file.exists() else None
            changed = ["(no record of what produced it)"] if old is None else differences(old, record)
            if changed and self.on_change == "refuse":
                raise OutputMismatchError(
                    f"{self.output} holds {self.what} from another run; continuing it would mix the two. What differs:\n  "
                    + "\n  ".join(changed[:20])
                    + f"\nWrite to another file (the callback's `output`), delete {self.output}, or set the callback's "
                    "`on_change: restart` to start it over."
                )
            if changed:
                log.warning("%s: produced by another run (%s); starting it over", self.output, "; ".join(changed[:5]))
                if trainer.is_global_zero:
                    for path in existing:
                        path.unlink()
                trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(json.dumps(record, indent=1) + "\n", self.provenance_file)

    def _all_rows(self) -> list[dict[str, Any]]:
        rows = _read_rows(self.output)
        for path in sorted(self.output.parent.glob(f"{self.output.stem}.rank*{self.output.suffix}")):
            rows += _read_rows(path)
        return rows

    # --- what a finished unit of work is (overridden by ScoreWriter) -----------------------------------------

    def done_units(self, rows: Sequence[dict[str, Any]], pl_module: LightningModule) -> set:
        """Units already finished in `rows`: problems with all of the module's `num_samples` samples."""
        return complete_problems(rows, getattr(pl_module, "num_samples", 1))

    def unit_of(self, row: dict[str, Any]) -> Any:
        """The unit a written row belongs to."""
        return row["problem_id"]

    def skip_done(self, datamodule: Any, done: set) -> None:
        """Tell the data module which units to leave out of the predict loader."""
        if hasattr(datamodule, "skip_ids"):
            datamodule.skip_ids = set(done)

    def batch_units(self, prediction: Sequence[dict[str, Any]], batch: Any) -> int:
        """Units a batch finished (shown on the progress bar): its problems."""
        return len(batch)

    # --- Lightning hooks -----------------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        self._check_provenance(trainer, pl_module)
        done = self.done_units(self._all_rows(), pl_module)
        if trainer.is_global_zero:
            # Keep only finished units in this rank's file, so a half-written one is redone cleanly.
            own = self.rank_file(trainer.global_rank)
            if own.exists():
                atomic_write_jsonl([r for r in _read_rows(own) if self.unit_of(r) in done], own)
        trainer.strategy.barrier()
        if done:
            log.info("%s: %d already complete in %s; skipping them", self.what, len(done), self.output)
        if trainer.datamodule is not None:
            self.skip_done(trainer.datamodule, done)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start, self._tokens, self._units = time.perf_counter(), 0, 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        path = self.rank_file(trainer.global_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prediction))
            f.flush()
        self._tokens += sum(r.get("num_tokens") or 0 for r in prediction)
        self._units += self.batch_units(prediction, batch)
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        show_on_progress_bar(trainer, f"{self._units} {self.unit_name}, {self._tokens / elapsed:,.0f} tok/s")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        rows = self._all_rows()
        # One line per (problem, sample): a resumed run never duplicates, whatever files it found.
        unique = {(r["problem_id"], r["sample_index"]): r for r in rows}
        order = {pid: i for i, pid in enumerate(dict.fromkeys(r["problem_id"] for r in rows))}
        merged = sorted(unique.values(), key=lambda r: (order[r["problem_id"]], r["sample_index"]))
        atomic_write_jsonl(merged, self.output)
        for path in self.output.parent.glob(f"{self.output.stem}.rank*{self.output.suffix}"):
            path.unlink()
        elapsed = time.perf_counter() - self._start
        log.info(
            "%s: wrote %d lines to %s (%d completion tokens in %.1f s, %.0f tok/s)",
            self.what, len(merged), self.output, self._tokens, elapsed, self._tokens / max(elapsed, 1e-9),
        )


class ScoreWriter(SampleWriter):
    """Writes scored samples (`e2h predict` with a reward model) as JSONL, with SampleWriter's guarantees:
    per-rank files appended batch by batch, merged and written atomically at the end, and a resumed run
    skips every line already scored, so no line is duplicated.

    Each output line is an input sample line plus ``steps``, ``step_scores`` and ``score``. The unit of work
    is one line, (problem_id, sample_index): a problem's samples may be split across batches.
    """

    what = "scores"
    unit_name = "lines"

    def __init__(self, output: str = "runs/scored.jsonl", on_change: Literal["refuse", "restart"] = "refuse") -> None:
        super().__init__(output, on_change)

    def done_units(self, rows: Sequence[dict[str, Any]], pl_module: LightningModule) -> set:
        return {self.unit_of(r) for r in rows}

    def unit_of(self, row: dict[str, Any]) -> Any:
        return (str(row["problem_id"]), row["sample_index"])

    def skip_done(self, datamodule: Any, done: set) -> None:
        if hasattr(datamodule, "skip_keys"):
            datamodule.skip_keys = set(done)

    def batch_units(self, prediction: Sequence[dict[str, Any]], batch: Any) -> int:
        return len(prediction)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        source = getattr(getattr(trainer.datamodule, "predict_input", None), "path", None)
        if stage == "predict" and source is not None and Path(source).resolve() == self.output.resolve():
            raise ValueError(f"the scores would overwrite the samples they score ({source}); choose another output")
        super().setup(trainer, pl_module, stage)


class TokensPerSecond(Callback):
    """Logs training tokens/s (non-padding tokens, all ranks) to the progress bar and the logger."""

    def __init__(self) -> None:
        self._last: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._last = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._last is None or not isinstance(batch, dict) or "attention_mask" not in batch:
            return
        elapsed = time.perf_counter() - self._last
        tokens = float(batch["attention_mask"].sum()) * trainer.world_size
        pl_module.log("train/tokens_per_s", tokens / max(elapsed, 1e-9), prog_bar=True)


def divergence(first: float, best: float, peak: float, last: float, uniform: float | None) -> str | None:
    """Why a training-loss curve counts as diverged, or None. `uniform` is the loss of a model that has
    learned nothing (ln of the vocabulary for next-token prediction, ln 2 for binary labels), if known.

    Diverged: a non-finite last loss; a peak of more than 10x the first loss (the update blew the weights
    up; the loss may come back down to the uniform level, which is not recovery); or a loss that was well below
    the uniform level (best < 0.8 x uniform) and has gone back to it (last >= 0.95 x uniform)."""
    if not math.isfinite(last):
        return f"the last training loss is {last}"
    if peak > 10 * first:
        return f"the training loss rose to {peak:.4g}, more than 10x its first value {first:.4g}"
    if uniform is not None and best < 0.8 * uniform and last >= 0.95 * uniform:
        return (f"the training loss went from {best:.4g} back to {last:.4g}, the level of a model that has learned "
                f"nothing ({uniform:.4g})")
    return None


class ExportHF(Callback):
    """Writes the trained model as a Hugging Face folder (`save_hf`) when fit ends: to `folder`, by default
    ``hf`` in the run's folder (``default_root_dir``).

    A run whose training loss (``train/loss``) diverged (`divergence`) is not exported: an earlier good export
    stays, and the fit fails with the reason, instead of ending normally with a broken model in ``hf/``."""

    def __init__(self, folder: str | None = None) -> None:
        self.folder = folder
        self._losses: list[float] = []  # first, best, peak, last

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._losses = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is None:
            return
        value = float(loss)
        if not self._losses:
            self._losses = [value, value, value, value]
        else:
            first, best, peak, _ = self._losses
            self._losses = [first, min(best, value), max(peak, value), value]

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        folder = self.folder or run_path(trainer, EXPORT)
        reason = divergence(*self._losses, getattr(pl_module, "uniform_loss", None)) if self._losses else None
        if reason is not None:
            raise TrainingDiverged(
                f"training diverged: {reason}. The model is not exported to {folder} (an earlier export there is "
                "kept); the checkpoints are as they were written. Lower the learning rate and start again."
            )
        # Every rank calls it: under FSDP / ZeRO-3 the weights are gathered first; rank 0 writes.
        pl_module.save_hf(folder)
        if trainer.is_global_zero:
            log.info("exported the model as a Hugging Face folder: %s", folder)


class MetricsFile(Callback):
    """Writes the metrics of a `validate` or `test` run (what its printed table shows) to a JSON file, for
    scripts and reports: ``{"stage": "test", "global_step": 0, "metrics": {"test/acc_level_4": 0.05, ...}}``."""

    def __init__(self, path: str = "runs/metrics.json") -> None:
        self.path = path

    def _write(self, trainer: Trainer, stage: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {"stage": stage, "global_step": trainer.global_step, "metrics": dict(sorted(metrics.items()))}
        atomic_write_text(json.dumps(row, indent=1) + "\n", self.path)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":  # during fit the checkpoints and TensorBoard hold them
            self._write(trainer, "validate")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write(trainer, "test")
