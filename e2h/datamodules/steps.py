"""The reward model's data: step-labelled solutions for ORM / PRM / OPRM training, and samples to score.

Training and validation data are lists of `StepSource`, each one of three kinds::

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
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader

from e2h.datamodules.base import TokenizingDataModule
from e2h.datamodules.sampler import training_sampler
from e2h.datamodules.sources import ProblemSource
from e2h.data.errors import DataError
from e2h.data.files import read_jsonl
from e2h.data.prompts import PromptFormat
from e2h.data.samples import SAMPLE_FIELDS
from e2h.data.step_solutions import completion_steps
from e2h.data.step_solutions import StepSolution
from e2h.text.encoding import IGNORE_LABEL, encode_step_solution
from e2h.text.packing import collate_padded, pack_sequences

log = logging.getLogger(__name__)

SOURCE_KINDS = ("steps", "synthetic", "samples")
SYNTHETIC_PREFIX = "synthetic/"
QUESTION_HEADING = "# Question\n\n"
SOLUTION_HEADING = "\n\n# Solution"
# Per-token fields of an encoded example: the ones packing concatenates and collation pads.
TOKEN_FIELDS = ("input_ids", "step_labels", "step_end_labels", "outcome_labels")


# ---------------------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class LabelledExample:
    """One solution to encode: its labels, the prompt it is read behind, and where it came from (for errors)."""

    solution: StepSolution
    prompt: str
    where: str


@dataclass
class StepSource:
    """One source of step-labelled solutions.

    kind: ``steps`` (a step-labelled JSONL, e.g. converted PRM800K or `e2h data synth`'s train_steps.jsonl),
        ``synthetic`` (the synthetic benchmark's step solutions, generated in memory) or ``samples`` (a
        generator's samples JSONL: outcome label = the line's ``correct``; lines without a gold answer are
        skipped).
    path: the file, for ``steps`` and ``samples``.
    levels: keep only these levels (None: all; a level filter drops records of unknown level).
    limit: keep at most this many solutions after filtering, drawn with `seed` (None: all).
    seed: the synthetic benchmark's seed (as `ProblemSource.seed`) and the draws of wrong steps and `limit`.
    split, synthetic_per_level: the synthetic split (``train`` / ``test``) and the benchmark's size per
        level, as in `ProblemSource` (use the same sizes as the generator's config, so that the test split
        stays disjoint from the problems trained on).
    wrong_fraction: share of synthetic solutions given one wrong step.
    error_kinds: what goes wrong in those steps (`e2h.data.synthetic.corrupt_steps`): ``result`` (an arithmetic
        slip), ``operation`` (the operation miscopied), ``restatement`` (the remainder miscopied).
    process_labels: for ``samples`` of synthetic problems (ids ``synthetic/...``): label every step exactly
        with `e2h.data.synthetic.label_steps` (PRM800K convention: None after the first wrong step).
    """

    kind: str = "synthetic"
    path: str | None = None
    levels: list[int] | None = None
    limit: int | None = None
    seed: int = 0
    split: str = "train"
    synthetic_per_level: dict[str, int] = field(default_factory=lambda: {"train": 2000, "test": 100})
    wrong_fraction: float = 0.5
    error_kinds: list[str] = field(default_factory=lambda: ["result"])
    process_labels: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"step source kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.kind in ("steps", "samples") and not self.path:
            raise ValueError(f"a {self.kind!r} source needs `path` (a JSONL file)")
        if self.kind == "synthetic" and self.path:
            raise ValueError("a 'synthetic' source is generated in memory; it takes no `path` (use kind: steps)")
        if self.process_labels and self.kind != "samples":
            raise ValueError("`process_labels` applies to 'samples' sources (the others carry their own labels)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive or null, got {self.limit}")

    def describe(self) -> str:
        where = f"{self.kind} {self.path}" if self.path else f"synthetic {self.split} split"
        return where + (f" levels {self.levels}" if self.levels else "")

    def load(self, fmt: PromptFormat) -> list[LabelledExample]:
        """The source's solutions, level-filtered and limited, each with its prompt."""
        if self.kind == "synthetic":
            examples = self._synthetic(fmt)
        elif self.kind == "steps":
            examples = self._steps_file(fmt)
        else:
            examples = self._samples_file()
        examples = _filter_levels(examples, self.levels, self.describe())
        if self.limit is not None and self.limit < len(examples):
            # A seeded draw, kept in the source's order so per-level reports stay readable.
            keep = sorted(random.Random(self.seed).sample(range(len(examples)), self.limit))
            examples = [examples[i] for i in keep]
        return examples

    def _synthetic(self, fmt: PromptFormat) -> list[LabelledExample]:
        from e2h.data.synthetic import generate_step_solutions

        # All levels are generated and then filtered, exactly as ProblemSource does, so the problems are the
        # same ones the generator's configs train and test on.
        problems = ProblemSource(
            split=self.split, levels=self.levels, seed=self.seed, synthetic_per_level=self.synthetic_per_level
        ).load()
        solutions = generate_step_solutions(problems, self.wrong_fraction, self.seed, self.error_kinds)
        where = f"synthetic {self.split} split"
        return [LabelledExample(s, fmt.prompt(s.problem), f"{where}, {s.unique_id}") for s in solutions]

    def _steps_file(self, fmt: PromptFormat) -> list[LabelledExample]:
        examples = []
        for lineno, row in read_jsonl(self.path):
            where = f"{self.path}:{lineno}"
            solution = StepSolution.from_dict(row, where)
            examples.append(LabelledExample(solution, fmt.prompt(solution.problem), where))
        return examples

    def _samples_file(self) -> list[LabelledExample]:
        examples, no_gold = [], 0
        for lineno, row in sample_lines(self.path):
            where = f"{self.path}:{lineno}"
            if row["gold"] is None:
                no_gold += 1  # no reference answer, so no outcome label
                continue
            examples.append(LabelledExample(sample_solution(row, self.process_labels, where), row["prompt"], where))
        if no_gold:
            log.info("%s: skipped %d sample(s) without a gold answer", self.path, no_gold)
        return examples


def _level_table(levels: Iterable[int | None]) -> dict[int | None, int]:
    """Count per level, unknown (None) last: what error messages show when a level filter keeps nothing."""
    return dict(sorted(Counter(levels).items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def _filter_levels(examples: list[LabelledExample], levels: list[int] | None, what: str) -> list[LabelledExample]:
    """Keep the examples of `levels` (None: all); a filter that keeps nothing is an error naming what exists."""
    if levels is None:
        return examples
    kept = [e for e in examples if e.solution.level in set(levels)]
    if not kept:
        present = _level_table(e.solution.level for e in examples)
        raise DataError(
            f"{what}: level filter {sorted(levels)} keeps no solution; levels present (level: count): {present}"
        )
    unknown = sum(e.solution.level is None for e in examples)
    if unknown:
        log.info("%s: level filter excluded %d solution(s) of unknown level", what, unknown)
    return kept


# ---------------------------------------------------------------------------------------------------------
# Samples lines (a generator's output)


def sample_lines(path: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of a samples JSONL, checked: the fields `e2h.data.samples.read_samples` needs plus
    ``prompt`` (a reward model reads the solution behind the prompt it was sampled with), and no two lines
    for the same (problem_id, sample_index)."""
    rows, seen = [], {}
    for lineno, row in read_jsonl(path):
        missing = [f for f in (*SAMPLE_FIELDS, "prompt") if f not in row]
        if missing:
            raise DataError(
                f"{path}:{lineno}: sample is missing field(s) {missing} (a file written by `e2h predict` has them)"
            )
        if not isinstance(row["completion"], str) or not isinstance(row["prompt"], str):
            raise DataError(f"{path}:{lineno}: 'prompt' and 'completion' must be strings")
        key = (str(row["problem_id"]), row["sample_index"])
        if key in seen:
            raise DataError(f"{path}:{lineno}: sample {key} repeats line {seen[key]}; each sample must appear once")
        seen[key] = lineno
        rows.append((lineno, row))
    if not rows:
        raise DataError(f"{path}: no samples")
    return rows


def question_from_prompt(prompt: str) -> str | None:
    """The question a prompt in the paper format asks last: the text between its last ``# Question`` heading
    and the ``# Solution`` heading after it (few-shot exemplars come before it). None if there is none."""
    start = prompt.rfind(QUESTION_HEADING)
    if start < 0:
        return None
    start += len(QUESTION_HEADING)
    end = prompt.find(SOLUTION_HEADING, start)
    return None if end < 0 else prompt[start:end]


def sample_outcome(row: dict[str, Any]) -> int:
    """A graded sample's outcome label: its ``correct`` field, or the grader's verdict when that is null."""
    if row.get("correct") is not None:
        return int(bool(row["correct"]))
    from e2h.grading import is_equivalent

    return int(is_equivalent(row["answer"], row["gold"]))


def sample_solution(row: dict[str, Any], process_labels: bool, where: str) -> StepSolution:
    """A graded sample as a step-labelled solution: steps from its completion, outcome from its grade, and
    with `process_labels` exact step labels (synthetic problems only)."""
    steps = completion_steps(row["completion"])
    question = question_from_prompt(row["prompt"])
    labels: list[int | None] = [None] * len(steps)
    if process_labels:
        if not str(row["problem_id"]).startswith(SYNTHETIC_PREFIX):
            raise DataError(
                f"{where}: process_labels needs synthetic problems (ids {SYNTHETIC_PREFIX}...), "
                f"got {row['problem_id']!r}"
            )
        if question is None:
            raise DataError(
                f"{where}: no '# Question ... # Solution' in the prompt; process_labels needs the paper prompt format"
            )
        from e2h.data.synthetic import label_steps

        try:
            labels = label_steps(question, steps)[0]
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
    return StepSolution(
        problem=question if question is not None else row["prompt"],
        steps=tuple(steps),
        labels=tuple(labels),
        outcome=sample_outcome(row) if row["gold"] is not None else None,
        answer=row["gold"],
        level=row["level"],
        unique_id=f"{row['problem_id']}#{row['sample_index']}",
        source="samples",
    )


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
    step_end_labels = [IGNORE_LABEL] * len(enc.input_ids)
    for position, label in zip(enc.step_end_positions, example.solution.labels, strict=True):
        if label is not None:
            step_end_labels[position] = float(label)
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
        if spec.levels is not None:
            kept = [(w, r) for w, r in lines if r["level"] in set(spec.levels)]
            if not kept:
                present = _level_table(r["level"] for _, r in lines)
                raise DataError(
                    f"{spec.path}: level filter {sorted(spec.levels)} keeps no sample; "
                    f"levels present (level: count): {present}"
                )
            lines = kept
        return lines

    # --- loaders -------------------------------------------------------------------------------------------

    def _collate(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate_padded(
            rows,
            pad_id=self.tokenizer.pad_token_id,
            pad_values={"step_labels": IGNORE_LABEL, "step_end_labels": IGNORE_LABEL, "outcome_labels": IGNORE_LABEL},
        )
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
