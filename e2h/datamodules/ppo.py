"""PPO's prompt stream: problems as prompts, each rollout's prompt batch repeated once per training step.

One PPO rollout is generated from `prompts_per_rollout` prompts and then trained on for several optimizer
steps (minibatches x PPO epochs) and, within each, several micro-batches (gradient accumulation). Lightning
calls ``training_step`` once per loader batch, so the loader yields every rollout's prompt batch
`batches_per_rollout` times in a row, each time tagged with the rollout number and the position within it:
the module generates on position 0 and trains on the slice of the cached rollout that the position names.
Both numbers come from the module's batch sizes: `PPOModule` hands its `e2h.rl.rollout.RolloutPlan` to
`rollout_plan` when fit starts, so the batch sizes are stated once and this module never reads a module.

Hidden answers: in the easy-to-hard setting only easy problems give an outcome reward. With
``hide_answers_for_levels: [4, 5]`` the training prompts of those levels carry ``answer: None`` (the
outcome reward is then the constant of `e2h.rl.rewards.outcome_reward`); validation keeps every answer, since
it measures accuracy.

Resuming: the order of prompts is drawn from (seed, epoch) and a resumed fit skips the rollouts already
trained on (`e2h.datamodules.sampler.RolloutBatchSampler`, the SFT loaders' resumable sampler).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset

from e2h.datamodules.problems import FewShot, ProblemsDataModule
from e2h.datamodules.sampler import RolloutBatchSampler, resume
from e2h.datamodules.sources import ProblemSource
from e2h.rl.rollout import RolloutPlan

log = logging.getLogger(__name__)


class _TaggedPrompts(Dataset):
    """Prompt records looked up by ``(item, rollout, position)``: the record with its tags added."""

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        item, rollout, position = key
        return {**self.records[item], "rollout": rollout, "position": position}


def collate_rollout_prompts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A rollout batch: the prompt records, and the rollout number and position they share."""
    rollouts = {r["rollout"] for r in rows}
    positions = {r["position"] for r in rows}
    if len(rollouts) != 1 or len(positions) != 1:
        raise RuntimeError(f"a rollout batch mixes rollouts {sorted(rollouts)} or positions {sorted(positions)}")
    records = [{k: v for k, v in r.items() if k not in ("rollout", "position")} for r in rows]
    return {"records": records, "rollout": rollouts.pop(), "position": positions.pop()}


def hide_answers(records: Sequence[dict[str, Any]], levels: Sequence[int] | None) -> list[dict[str, Any]]:
    """The records with ``answer`` set to None (hidden) where ``level`` is one of `levels`."""
    hidden = set(levels or ())
    return [{**r, "answer": None} if r.get("level") in hidden else dict(r) for r in records]


class PPOPromptsDataModule(ProblemsDataModule):
    """Training prompts for PPO (repeated per rollout, hard answers optionally hidden) and validation / test
    problems for greedy accuracy (answers always visible)."""

    def __init__(
        self,
        train: ProblemSource | None = None,
        val: ProblemSource | None = None,
        test: ProblemSource | None = None,
        held_out: str | None = None,
        prompt_format: str = "paper",
        few_shot: FewShot | None = None,
        hide_answers_for_levels: list[int] | None = None,
        max_prompt_tokens: int | None = None,
        shuffle: bool = True,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        tokenizer: str | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            train: the PPO prompts (see `ProblemSource`); val, test: problems for greedy accuracy.
            held_out: a problem file (e.g. MATH500) removed from `train` by id and text.
            prompt_format: ``paper`` or ``boxed``. few_shot: in-context exemplars in every prompt.
            hide_answers_for_levels: training prompts of these levels get ``answer: None`` (e.g. ``[4, 5]``).
            max_prompt_tokens: drop prompts longer than this (the official 384), with a logged count, rather
                than truncating a question; None keeps every prompt.
            shuffle: draw each epoch's prompt order from (seed, epoch).
            eval_batch_size: problems per greedy-generation batch.
            tokenizer: ``char`` or a tokenizer path; default: the module's tokenizer.
        """
        super().__init__(
            train=train, val=val, test=test, held_out=held_out, prompt_format=prompt_format, few_shot=few_shot,
            eval_batch_size=eval_batch_size, num_workers=num_workers, tokenizer=tokenizer, seed=seed,
        )
        self.hide_answers_for_levels = list(hide_answers_for_levels or [])
        self.max_prompt_tokens = max_prompt_tokens
        self.shuffle = shuffle
        # Set by the PPO module when fit starts: how a rollout maps onto this device's loader batches.
        self.rollout_plan: RolloutPlan | None = None

    def _encode(self, records, split: str = "train") -> list[dict[str, list[int]]]:
        # PPO trains on prompts and its own samples: no SFT examples are encoded (the parent's setup asks).
        return []

    def ppo_records(self, split: str) -> list[dict[str, Any]]:
        """The split's prompt records, too-long prompts dropped, answers hidden for training."""
        records = self.prompt_records(split)
        if self.max_prompt_tokens is not None:
            from e2h.text.encoding import encode_prompt

            kept = [r for r in records if len(encode_prompt(self.tokenizer, r["prompt"])) <= self.max_prompt_tokens]
            if len(kept) < len(records):
                log.warning("%s: dropped %d of %d prompts longer than %d tokens",
                            split, len(records) - len(kept), len(records), self.max_prompt_tokens)
            records = kept
        return hide_answers(records, self.hide_answers_for_levels) if split == "train" else records

    def train_dataloader(self) -> DataLoader:
        if self.rollout_plan is None:
            raise RuntimeError("PPOPromptsDataModule's train loader needs a rollout plan: fit it with a PPO module, "
                               "which sets `rollout_plan` from its batch sizes")
        records = self.ppo_records("train")
        sampler = RolloutBatchSampler(
            len(records), self.rollout_plan, shuffle=self.shuffle, seed=self.seed, rank=self.trainer.global_rank
        )
        resume(sampler, self.trainer, sampler.num_units())
        return DataLoader(
            _TaggedPrompts(records), batch_sampler=sampler, collate_fn=collate_rollout_prompts, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader | list:
        if "val" not in self.problems:  # no validation set configured: no validation
            return []
        return DataLoader(self.ppo_records("val"), batch_size=self.eval_batch_size, shuffle=False, collate_fn=list)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.ppo_records("test"), batch_size=self.eval_batch_size, shuffle=False, collate_fn=list)
