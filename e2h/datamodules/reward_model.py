"""The reward model's data: step-labelled solutions for ORM / PRM / OPRM training, and samples to score.

Training and validation data are lists of `e2h.datamodules.sources.StepSource`, each one of three kinds::

    train:
      - {kind: steps, path: runs/prm800k_easy.jsonl}   # step-labelled JSONL (levels chosen at conversion)
      - {kind: synthetic, split: train, levels: [1, 2, 3], wrong_fraction: 0.5}   # generated in memory
      - {kind: samples, path: runs/train_samples.jsonl, levels: [1, 2, 3]}  # a generator's graded samples
    val:
      - {kind: synthetic, split: test, levels: [1, 2, 3, 4, 5]}

ORM, PRM and OPRM differ only in which labels the loss reads (the module's ``supervision``); every
example carries all the labels it has: process labels per step (synthetic, steps files, and samples of
synthetic problems with ``process_labels: true``) and an outcome label (synthetic, samples, steps files that
have one). An OPRM combines sources, e.g. synthetic process labels with samples' outcome labels.

``predict`` names a samples JSONL (written by `e2h predict` with the generator) to score; each line is
scored as it was sampled, behind its own prompt (few-shot exemplars included).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from torch.utils.data import DataLoader

from e2h.data.errors import DataError
from e2h.data.prompts import PromptFormat
from e2h.data.records import filter_levels
from e2h.data.samples import sample_lines
from e2h.data.step_solutions import StepSolution, completion_steps
from e2h.datamodules.base import TokenizingDataModule
from e2h.datamodules.sampler import training_sampler
from e2h.datamodules.sources import LabelledExample, StepSource
from e2h.text.alignment import labels_at
from e2h.text.encoding import IGNORE_LABEL, encode_step_solution
from e2h.text.packing import collate_padded, pack_sequences

log = logging.getLogger(__name__)

# Per-token fields of an encoded example: the ones packing concatenates and collation pads.
TOKEN_FIELDS = ("input_ids", "step_labels", "step_end_labels", "outcome_labels")


@dataclass
class ScoreInput:
    """Samples to score: a samples JSONL (written by `e2h predict`), optionally only some levels."""

    path: str = "runs/samples.jsonl"
    levels: list[int] | None = None


# ---------------------------------------------------------------------------------------------------------
# Encoding


def encode_example(tokenizer, example: LabelledExample, max_length: int | None) -> dict[str, Any] | None:
    """Token ids and per-token labels of one example; None when it is longer than `max_length`.

    Step labels come in two layouts so the module alone chooses between them: ``step_labels`` on every token
    of a labelled step (the official training) and ``step_end_labels`` on its last token only (where scores
    are read, and what validation measures). ``outcome_labels`` holds the outcome at the final token (EOS).
    An example that does not fit is dropped whole (the caller counts it): truncating would cut the outcome's
    position, or a step, off. A data fault raises DataError naming where the example came from.
    """
    try:
        enc = encode_step_solution(tokenizer, example.prompt, example.solution, label_all_step_tokens=True)
    except DataError as e:
        raise DataError(f"{example.where}: {e}") from None
    if max_length is not None and len(enc.input_ids) > max_length:
        return None
    ignored = float(IGNORE_LABEL)
    step_end_labels = labels_at(len(enc.input_ids), enc.step_end_positions, example.solution.labels, ignored)
    return {
        "input_ids": enc.input_ids,
        "step_labels": enc.step_labels,
        "step_end_labels": step_end_labels,
        "outcome_labels": enc.outcome_labels,
        "step_end_positions": enc.step_end_positions,
        "level": example.solution.level,
        "unique_id": example.solution.unique_id,
    }


def label_summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Labelled positions in encoded rows: process labels (at step ends) and outcome labels, by class."""
    counts = Counter()
    for row in rows:
        for kind, key in (("process", "step_end_labels"), ("outcome", "outcome_labels")):
            for value in row[key]:
                if value != IGNORE_LABEL:
                    counts[f"{kind}_{int(value)}"] += 1
    return {k: counts[k] for k in ("process_1", "process_0", "outcome_1", "outcome_0")}


# ---------------------------------------------------------------------------------------------------------
# The DataModule


def default_val() -> list[StepSource]:
    """Synthetic test split, levels 1-5, half the solutions with a wrong step: step AUROC on hard levels."""
    return [StepSource(kind="synthetic", split="test", levels=[1, 2, 3, 4, 5], wrong_fraction=0.5)]


class StepsDataModule(TokenizingDataModule):
    def __init__(
        self,
        train: list[StepSource] | None = None,
        val: list[StepSource] | None = None,
        test: list[StepSource] | None = None,
        predict: ScoreInput | None = None,
        prompt_format: str = "paper",
        max_length: int = 512,
        pack: bool = False,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        tokenizer: str | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            train: training sources (see `StepSource`), concatenated.
            val: validation sources; default: synthetic test split levels 1-5 (`default_val`); ``[]``: none.
            test: sources for ``e2h test`` (the validation metrics under ``test/``).
            predict: the samples JSONL to score (``e2h predict``).
            prompt_format: ``paper`` or ``boxed``, for sources that are not samples (samples keep their prompt).
            max_length: longest training/validation example in tokens; longer ones are dropped and counted
                (scoring never truncates: every step of a sample gets a score).
            pack: pack training examples into rows of `max_length` tokens (attention kept separate).
            batch_size: training rows per batch. eval_batch_size: solutions per validation / scoring batch.
            tokenizer: ``char`` or a tokenizer path; default: the model's tokenizer.
            seed: the training order's seed.
        """
        # The arguments, recorded beside what `e2h predict` writes (e2h.training.provenance).
        self.settings = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(tokenizer)
        self.sources: dict[str, list[StepSource]] = {
            "train": list(train or []),
            "val": default_val() if val is None else list(val),
            "test": list(test or []),
        }
        self.predict_input = predict
        self.fmt = PromptFormat(prompt_format)
        self.max_length, self.pack = max_length, pack
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed = seed
        self.encoded: dict[str, list[dict[str, Any]]] = {}
        self.label_counts: dict[str, dict[str, int]] = {}
        self.predict_lines: list[tuple[str, dict[str, Any]]] = []
        # (problem_id, sample_index) pairs the score writer found already scored; predict skips them (resume).
        self.skip_keys: set[tuple[str, int]] = set()


    # --- loading -------------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ()}
        for split in wanted.get(stage, ("train", "val", "test")):
            if not self.sources[split]:
                if stage is None or (split == "val" and stage == "fit"):  # optional here
                    continue
                raise ValueError(f"stage {stage!r} needs data.{split} (a list of step sources)")
            if split not in self.encoded:
                self.encoded[split] = self._encode_sources(split)
        if stage in ("predict", None) and self.predict_input is not None and not self.predict_lines:
            self.predict_lines = self._predict_lines()
        elif stage == "predict" and self.predict_input is None:
            raise ValueError("stage 'predict' needs data.predict ({path: samples.jsonl})")

    def _encode_sources(self, split: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for source in self.sources[split]:
            examples = source.load(self.fmt)
            encoded = [encode_example(self.tokenizer, e, self.max_length) for e in examples]
            kept = [row for row in encoded if row is not None]
            if len(kept) < len(encoded):
                log.warning(
                    "%s %s: dropped %d of %d solutions longer than max_length=%d tokens",
                    split, source.describe(), len(encoded) - len(kept), len(encoded), self.max_length,
                )
            if not kept:
                raise DataError(f"{split} {source.describe()}: no solution fits in max_length={self.max_length} tokens")
            counts = label_summary(kept)
            log.info(
                "%s %s: %d solutions (levels %s); labels: process %d good / %d bad, outcome %d right / %d wrong",
                split, source.describe(), len(kept), dict(Counter(r["level"] for r in kept)),
                counts["process_1"], counts["process_0"], counts["outcome_1"], counts["outcome_0"],
            )
            rows += kept
        self.label_counts[split] = label_summary(rows)
        return rows

    def _predict_lines(self) -> list[tuple[str, dict[str, Any]]]:
        spec = self.predict_input
        lines = [(f"{spec.path}:{lineno}", row) for lineno, row in sample_lines(spec.path)]
        return filter_levels(lines, spec.levels, level_of=lambda line: line[1]["level"], noun="sample", where=spec.path)

    # --- loaders -------------------------------------------------------------------------------------------

    def _collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_padded(rows, pad_id=self.tokenizer.pad_token_id)
        if "position_ids" not in rows[0]:  # one solution a row: the padding mask suffices, no block mask
            del batch["sequence_ids"]
        return batch

    def train_dataloader(self) -> DataLoader:
        rows = self.encoded["train"]
        if self.pack:
            rows = pack_sequences(rows, self.max_length, keys=TOKEN_FIELDS)
        return DataLoader(
            rows,
            batch_size=self.batch_size,
            sampler=training_sampler(len(rows), self.batch_size, True, self.seed, self.trainer),
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        # Never packed: the metrics read per-solution fields (level, step ends) that packing would merge.
        return DataLoader(
            self.encoded[split], batch_size=self.eval_batch_size, shuffle=False,
            collate_fn=self._collate, num_workers=self.num_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [self._eval_loader("val")] if self.encoded.get("val") else []

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        todo = [
            (where, row) for where, row in self.predict_lines
            if (str(row["problem_id"]), row["sample_index"]) not in self.skip_keys
        ]
        # Encoded batch by batch in the collate function (in loader workers when num_workers > 0), so a
        # resumed run does not tokenise what it skips.
        return DataLoader(
            todo, batch_size=self.eval_batch_size, shuffle=False,
            collate_fn=self._collate_samples, num_workers=self.num_workers,
        )

    def _collate_samples(self, lines: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        rows = []
        for where, line in lines:
            steps = completion_steps(line["completion"])
            solution = StepSolution(
                problem="", steps=tuple(steps), labels=(None,) * len(steps),
                unique_id=f"{line['problem_id']}#{line['sample_index']}",
            )
            try:
                enc = encode_step_solution(self.tokenizer, line["prompt"], solution)
            except DataError as e:
                raise DataError(f"{where}: {e}") from None
            rows.append({
                "input_ids": enc.input_ids,
                "step_end_positions": enc.step_end_positions,
                "outcome_position": enc.outcome_position,
                "steps": steps,
                "sample": line,
            })
        return self._collate(rows)
