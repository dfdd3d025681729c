"""The generator's data: SFT examples, evaluation prompts (zero- or few-shot) and sampling prompts.

One DataModule serves every generator stage:

- ``fit``: (prompt, solution) pairs from `train`, prompt-masked, optionally packed; validation computes the
  loss on `val`'s reference solutions and greedy accuracy on `val`'s problems;
- ``validate`` / ``test``: greedy accuracy on `val` / `test` problems, with few-shot exemplars drawn from
  `few_shot.levels` when `few_shot.k > 0` (the paper's Full / Hard / Easy-to-Hard ICL);
- ``predict``: the `predict` problems, for sampling N solutions each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from e2h.data.few_shot import FewShotPrompt, draw_exemplars
from e2h.data.prompts import PromptFormat
from e2h.data.records import Problem, count_levels, load_problems
from e2h.datamodules.base import TokenizingDataModule
from e2h.datamodules.sampler import training_sampler
from e2h.datamodules.sources import ProblemSource

log = logging.getLogger(__name__)


@dataclass
class FewShot:
    """In-context exemplars: k solved problems from `levels` of `pool`, drawn once with `seed`."""

    k: int = 0
    levels: list[int] | None = None
    pool: ProblemSource = field(default_factory=ProblemSource)
    seed: int = 0


@dataclass
class MetaMath:
    """MetaMathQA as extra SFT data: MATH-derived items whose original question is a `train` problem."""

    source: str | None = None
    split: str = "train"
    keep_gsm: bool = False


def _problem_batch(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Generation batches stay lists of records: the module tokenises prompts with left padding itself.
    return problems


class ProblemsDataModule(TokenizingDataModule):
    def __init__(
        self,
        train: ProblemSource | None = None,
        val: ProblemSource | None = None,
        test: ProblemSource | None = None,
        predict: ProblemSource | None = None,
        held_out: str | None = None,
        prompt_format: str = "paper",
        few_shot: FewShot | None = None,
        metamath: MetaMath | None = None,
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
            train, val, test, predict: problem sets per stage (see `ProblemSource`).
            held_out: a problem file (e.g. MATH500) removed from `train` and the few-shot pool by id and text.
            prompt_format: ``paper`` or ``boxed``.
            few_shot: in-context exemplars for evaluation and sampling prompts.
            metamath: MetaMathQA added to the SFT data.
            max_length: longest SFT example in tokens (longer ones are truncated at the response end).
            pack: pack several examples into each row of `max_length` tokens (attention kept separate).
            batch_size: SFT rows per batch. eval_batch_size: problems per generation batch.
            tokenizer: ``char`` or a tokenizer path; default: the model's tokenizer.
        """
        # The arguments, recorded beside what `e2h predict` writes (e2h.training.provenance).
        self.settings = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(tokenizer)
        self.train_source, self.val_source, self.test_source, self.predict_source = train, val, test, predict
        self.held_out = held_out
        self.fmt = PromptFormat(prompt_format)
        self.few_shot = few_shot or FewShot()
        self.metamath = metamath or MetaMath()
        self.max_length, self.pack = max_length, pack
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.seed = seed
        self.problems: dict[str, list[Problem]] = {}
        self.sft: dict[str, list[dict[str, list[int]]]] = {}
        self.prompt: FewShotPrompt = FewShotPrompt(())
        # Problem ids the sampling writer found already complete; predict skips them (resume).
        self.skip_ids: set[str] = set()
        self._reference_lengths: dict[str, dict[int | None, list[int]]] = {}


    # --- loading -------------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        held_out = load_problems(self.held_out) if self.held_out else None
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
        }.get(stage or "fit", ("train", "val", "test", "predict"))
        for name in wanted:
            source = getattr(self, f"{name}_source")
            if source is None:
                if name in ("train", "test", "predict") or stage == "validate":
                    raise ValueError(f"stage {stage!r} needs data.{name} (a ProblemSource)")
                continue
            if name not in self.problems:
                self.problems[name] = source.load(held_out if name == "train" else None)
                log.info("%s: %d problems from %s", name, len(self.problems[name]), source.source)
        if self.few_shot.k > 0:
            evaluated = [p for name in ("val", "test", "predict") for p in self.problems.get(name, [])]
            pool = self.few_shot.pool.load(held_out)
            exemplars = draw_exemplars(pool, self.few_shot.k, self.few_shot.levels, self.few_shot.seed, exclude=evaluated)
            self.prompt = FewShotPrompt(tuple(exemplars), self.fmt)
        else:
            self.prompt = FewShotPrompt((), self.fmt)
        if stage in ("fit", None):
            self.sft["train"] = self._encode(self._train_records(), "train")
            if "val" in self.problems:
                self.sft["val"] = self._encode(self.problems["val"], "val")

    def _train_records(self) -> list[Problem]:
        records = list(self.problems["train"])
        if self.metamath.source:
            from e2h.data.metamath import metamath_to_problems
            from e2h.data.records import load_rows

            rows = load_rows(self.metamath.source, split=self.metamath.split)
            extra = metamath_to_problems(rows, records, keep_gsm=self.metamath.keep_gsm, where=self.metamath.source)
            log.info("metamath: %d items kept from %s", len(extra), self.metamath.source)
            records += extra
        return records

    def _encode(self, records: list[Problem], split: str = "train") -> list[dict[str, list[int]]]:
        """SFT examples with next-token targets shifted inside each example (so packing never trains a
        prediction across two examples). Examples cut by `max_length` are counted per level and warned about:
        the model never sees their ends (the answer, the EOS that stops generation)."""
        from e2h.text.encoding import IGNORE_LABEL, encode_sft

        examples = []
        cut: dict[int | None, list[int]] = {}  # level -> full lengths of the truncated examples
        totals = count_levels(p.level for p in records)
        for p in records:
            prompt, response = self.fmt.prompt(p.problem), self.fmt.response(p)
            enc = encode_sft(self.tokenizer, prompt, response, max_length=self.max_length,
                             where=f"{split} problem {p.unique_id} (level {p.level})")
            if enc["truncated"]:
                full = len(encode_sft(self.tokenizer, prompt, response)["input_ids"])
                cut.setdefault(p.level, []).append(full)
            targets = enc["labels"][1:] + [IGNORE_LABEL]
            examples.append({"input_ids": enc["input_ids"], "targets": targets})
        if cut:
            lines = [
                f"  level {level}: {len(lengths)} of {totals[level]} ({len(lengths) / totals[level]:.0%}), "
                f"longest {max(lengths)} tokens"
                for level, lengths in sorted(cut.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
            ]
            longest = max(max(v) for v in cut.values())
            rank_zero_warn(
                f"SFT {split} data: examples cut by data.init_args.max_length = {self.max_length} tokens, by level:\n"
                + "\n".join(lines)
                + f"\nTheir ends (answer, EOS) are never trained on. Set max_length to at least {longest}."
            )
        if self.pack:
            from e2h.text.packing import pack_sequences

            examples = pack_sequences(examples, self.max_length)
        return examples

    # --- loaders -------------------------------------------------------------------------------------------

    def _collate_sft(self, rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        from e2h.text.packing import collate_padded

        batch = collate_padded(rows, pad_id=self.tokenizer.pad_token_id)
        if not self.pack:  # one example a row: the padding mask separates them, no block mask needed
            del batch["sequence_ids"]
        return batch

    def _sft_loader(self, split: str, shuffle: bool) -> DataLoader:
        sampler = training_sampler(len(self.sft[split]), self.batch_size, shuffle, self.seed, self.trainer)
        return DataLoader(
            self.sft[split],
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self._collate_sft,
            num_workers=self.num_workers,
        )

    def prompt_records(self, split: str) -> list[dict[str, Any]]:
        """Problems of a split with their prompts, as generation batches consume them."""
        return [
            {
                "unique_id": p.unique_id,
                "level": p.level,
                "problem": p.problem,
                "answer": p.answer,
                "prompt": self.prompt(p.problem),
            }
            for p in self.problems[split]
            if p.unique_id not in self.skip_ids
        ]

    def reference_lengths(self, split: str) -> dict[int | None, list[int]]:
        """Token lengths (EOS included) of the reference solutions of a split's problems, by level: what a
        generation budget must fit (`e2h.eval.budget`). Problems without a solution are left out."""
        if split not in self._reference_lengths:
            lengths: dict[int | None, list[int]] = {}
            for p in self.problems.get(split, []):
                if p.solution and p.solution.strip():
                    response = self.tokenizer(self.fmt.response(p), add_special_tokens=False)["input_ids"]
                    lengths.setdefault(p.level, []).append(len(response) + 1)  # + EOS
            self._reference_lengths[split] = lengths
        return self._reference_lengths[split]

    def _generation_loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.prompt_records(split), batch_size=self.eval_batch_size, shuffle=False, collate_fn=_problem_batch
        )

    def train_dataloader(self) -> DataLoader:
        return self._sft_loader("train", shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        loaders = []
        if "val" in self.sft:
            loaders.append(self._sft_loader("val", shuffle=False))
        loaders.append(self._generation_loader("val"))
        return loaders

    def test_dataloader(self) -> DataLoader:
        return self._generation_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._generation_loader("predict")
