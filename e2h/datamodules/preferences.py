"""Iterative DPO's data: preference pairs to train on, problems to validate greedy accuracy on.

``train`` is a pairs JSONL (``e2h data pairs``): one line per pair with ``prompt``, ``chosen`` and
``rejected`` completions (and ``rejected_clipped``: a rejected completion cut by the token budget gets no EOS,
as it was sampled). Each side is encoded like an SFT example (`e2h.text.encoding.encode_sft`): the prompt's
tokens unlabelled, the completion's tokens and its EOS labelled, so a side's log-probability is the sum over
its labelled tokens. ``val`` / ``test`` are problem sets for greedy accuracy, as for the generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader

from e2h.data.errors import DataError
from e2h.data.files import read_jsonl
from e2h.datamodules.problems import ProblemsDataModule
from e2h.datamodules.sampler import training_sampler
from e2h.datamodules.sources import ProblemSource

PAIR_FIELDS = ("prompt", "chosen", "rejected")


class PreferencePairsDataModule(ProblemsDataModule):
    def __init__(
        self,
        train: str | None = None,
        val: ProblemSource | None = None,
        test: ProblemSource | None = None,
        max_length: int = 512,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        tokenizer: str | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            train: the pairs JSONL to fit on.
            val, test: problem sets for greedy accuracy (`ProblemSource`).
            max_length: longest side in tokens; a longer side is cut at its end (counted and warned about).
            batch_size: pairs per batch. eval_batch_size: problems per generation batch.
            tokenizer: ``char`` or a tokenizer path; default: the model's tokenizer.
        """
        super().__init__(val=val, test=test, max_length=max_length, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, tokenizer=tokenizer, seed=seed)
        self.pairs_path = train
        self.pairs: list[dict[str, Any]] = []

    def setup(self, stage: str | None = None) -> None:
        if stage not in ("fit", None):
            super().setup(stage)
            return
        if self.pairs_path is None:
            raise ValueError("stage 'fit' needs data.train: a pairs JSONL (`e2h data pairs`)")
        self.pairs = self._encode_pairs()
        if self.val_source is not None:
            super().setup("validate")

    def _encode_pairs(self) -> list[dict[str, Any]]:
        from e2h.text.encoding import encode_sft

        encoded, cut = [], 0
        for lineno, row in read_jsonl(self.pairs_path):
            where = f"{self.pairs_path}:{lineno}"
            missing = [f for f in PAIR_FIELDS if not isinstance(row.get(f), str)]
            if missing:
                raise DataError(f"{where}: a pair needs string field(s) {missing} (as `e2h data pairs` writes)")
            sides = {
                "chosen": encode_sft(self.tokenizer, row["prompt"], row["chosen"], self.max_length, where=where),
                "rejected": encode_sft(self.tokenizer, row["prompt"], row["rejected"], self.max_length,
                                       add_eos=not row.get("rejected_clipped", False), where=where),
            }
            cut += sum(side["truncated"] for side in sides.values())
            encoded.append({name: {"input_ids": s["input_ids"], "labels": s["labels"]} for name, s in sides.items()})
        if not encoded:
            raise DataError(f"{self.pairs_path}: no pairs")
        if cut:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"DPO pairs: {cut} completions cut by data.init_args.max_length = {self.max_length} "
                           "tokens; their ends are not compared")
        return encoded

    def _collate_pairs(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, torch.Tensor]]:
        from e2h.text.packing import collate_padded

        batch = {}
        for side in ("chosen", "rejected"):
            padded = collate_padded([r[side] for r in rows], pad_id=self.tokenizer.pad_token_id)
            batch[side] = {k: padded[k] for k in ("input_ids", "attention_mask", "labels")}
        return batch

    def train_dataloader(self) -> DataLoader:
        sampler = training_sampler(len(self.pairs), self.batch_size, True, self.seed, self.trainer)
        return DataLoader(self.pairs, batch_size=self.batch_size, sampler=sampler, collate_fn=self._collate_pairs)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._generation_loader("val")] if "val" in self.problems else []
