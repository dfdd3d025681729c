"""Callbacks: the samples writer (resumable JSONL), training throughput, Hugging Face export at fit end."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from e2h.io import atomic_write_jsonl, read_jsonl

log = logging.getLogger(__name__)


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


class SampleWriter(BasePredictionWriter):
    """Writes `e2h predict` samples as JSONL: one line per sample, per-rank files merged at the end.

    Resuming: problems whose N samples are already in the output (merged or per-rank files) are skipped,
    so a stopped run continues without duplicating lines.
    """

    def __init__(self, output: str = "runs/samples.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.output = Path(output)
        self._tokens = 0
        self._problems = 0
        self._start = 0.0

    def rank_file(self, rank: int) -> Path:
        return self.output.with_name(f"{self.output.stem}.rank{rank}{self.output.suffix}")

    def _all_rows(self) -> list[dict[str, Any]]:
        rows = _read_rows(self.output)
        for path in sorted(self.output.parent.glob(f"{self.output.stem}.rank*{self.output.suffix}")):
            rows += _read_rows(path)
        return rows

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        num_samples = getattr(pl_module, "num_samples", 1)
        done = complete_problems(self._all_rows(), num_samples)
        if trainer.is_global_zero:
            # Keep only complete problems in this rank's file, so a half-written problem is redone cleanly.
            own = self.rank_file(trainer.global_rank)
            if own.exists():
                atomic_write_jsonl([r for r in _read_rows(own) if r["problem_id"] in done], own)
        trainer.strategy.barrier()
        if done:
            log.info("samples: %d problems already complete in %s; skipping them", len(done), self.output)
        datamodule = trainer.datamodule
        if datamodule is not None and hasattr(datamodule, "skip_ids"):
            datamodule.skip_ids = set(done)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start, self._tokens, self._problems = time.perf_counter(), 0, 0

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        path = self.rank_file(trainer.global_rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in prediction))
            f.flush()
        self._tokens += sum(r["num_tokens"] for r in prediction)
        self._problems += len(batch)
        bar = getattr(trainer.progress_bar_callback, "predict_progress_bar", None)
        if bar is not None:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            bar.set_postfix(problems=self._problems, tok_per_s=f"{self._tokens / elapsed:,.0f}")

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
            "samples: wrote %d lines to %s (%d new tokens in %.1f s, %.0f tok/s)",
            len(merged), self.output, self._tokens, elapsed, self._tokens / max(elapsed, 1e-9),
        )


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


class ExportHF(Callback):
    """Writes the trained model as a Hugging Face folder (`save_hf`) when fit ends."""

    def __init__(self, folder: str = "runs/hf") -> None:
        self.folder = folder

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            pl_module.save_hf(self.folder)
            log.info("exported the model as a Hugging Face folder: %s", self.folder)
