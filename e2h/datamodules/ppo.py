"""PPO's prompt stream: problems as prompts, each rollout's prompt batch repeated once per training step.

One PPO rollout is generated from `prompts_per_rollout` prompts and then trained on for several optimizer
steps (minibatches x PPO epochs) and, within each, several micro-batches (gradient accumulation). Lightning
calls ``training_step`` once per loader batch, so the loader yields every rollout's prompt batch
`batches_per_rollout` times in a row, each time tagged with the rollout number and the position within it:
the module generates on position 0 and trains on the slice of the cached rollout that the position names.
Both numbers come from the module (`PPOModule.rollout_plan`), so the batch sizes are stated once.

Hidden answers: in the easy-to-hard setting only easy problems give an outcome reward. With
``hide_answers_for_levels: [4, 5]`` the training prompts of those levels carry ``answer: None`` (the
outcome reward is then the constant of `e2h.rl.rewards.outcome_reward`); validation keeps every answer, since
it measures accuracy.

Resuming: the order of prompts is drawn from (seed, epoch) and a resumed fit skips the rollouts already
trained on (Lightning restores the step counter before asking for the loader), as `ResumableSampler` does
for SFT.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from e2h.datamodules.problems import FewShot, ProblemsDataModule
from e2h.datamodules.sources import ProblemSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutPlan:
    """How one rollout maps onto loader batches (per device).

    prompts_per_rollout: prompts (= responses) a device generates per rollout.
    batches_per_rollout: loader batches (training steps, micro-batches included) spent on one rollout.
    """

    prompts_per_rollout: int
    batches_per_rollout: int


class RolloutBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Yields each rollout's prompt indices `repeats` times in a row, as ``(item, rollout, position)`` tuples.

    Epoch ``e`` is a permutation of the items drawn from ``(seed, e)``, cut into ``len // prompts_per_rollout``
    rollouts (a last incomplete one is dropped, so every rollout has the same size and statistics).
    ``rollout`` counts rollouts from the start of training (``e * rollouts_per_epoch + r``), which seeds the
    rollout's sampling; ``position`` runs from 0 to ``repeats - 1`` within a rollout.

    With several devices every rank draws the same permutation and takes its own `prompts_per_rollout`
    slice of each rollout (Lightning's distributed sampler must stay off: ``use_distributed_sampler: false``).
    """

    def __init__(
        self,
        num_items: int,
        prompts_per_rollout: int,
        repeats: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if prompts_per_rollout < 1 or repeats < 1:
            raise ValueError(f"prompts_per_rollout and repeats must be >= 1, got {prompts_per_rollout}, {repeats}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        if num_items < prompts_per_rollout * world_size:
            raise ValueError(
                f"{num_items} training prompts cannot fill one rollout of {prompts_per_rollout * world_size}; "
                "add prompts or lower rollout_batch_size"
            )
        self.num_items, self.prompts_per_rollout, self.repeats = num_items, prompts_per_rollout, repeats
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, batches to skip in it)

    @property
    def rollouts_per_epoch(self) -> int:
        return self.num_items // (self.prompts_per_rollout * self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def skip(self, epoch: int, num_batches: int) -> None:
        """In `epoch`, start after its first `num_batches` batches (the part a resumed run already trained on)."""
        self._skip = (epoch, num_batches)

    def _skipped(self) -> int:
        return self._skip[1] if self._skip and self._skip[0] == self.epoch else 0

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        order = self.order(self.epoch)
        n = self.prompts_per_rollout
        for batch_index in range(self._skipped(), len(self._all())):
            r, position = divmod(batch_index, self.repeats)
            rollout = self.epoch * self.rollouts_per_epoch + r
            start = (r * self.world_size + self.rank) * n
            yield [(item, rollout, position) for item in order[start : start + n]]

    def _all(self) -> range:
        return range(self.rollouts_per_epoch * self.repeats)

    def __len__(self) -> int:
        return len(self._all()) - self._skipped()


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

    def _encode(self, records) -> list[dict[str, list[int]]]:
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

    def _plan(self) -> RolloutPlan:
        module = self.trainer.lightning_module if self.trainer is not None else None
        if module is None or not hasattr(module, "rollout_plan"):
            raise RuntimeError("PPOPromptsDataModule's train loader needs a PPO module attached to the trainer")
        return module.rollout_plan()

    def train_dataloader(self) -> DataLoader:
        plan = self._plan()
        records = self.ppo_records("train")
        sampler = RolloutBatchSampler(
            len(records),
            plan.prompts_per_rollout,
            plan.batches_per_rollout,
            shuffle=self.shuffle,
            seed=self.seed,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )
        trainer = self.trainer
        # Resuming: Lightning restored its step counter before asking for the loader; skip what this epoch
        # already trained on (a whole number of rollouts when checkpoints sit at rollout boundaries).
        done = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * len(sampler)
        sampler.set_epoch(trainer.current_epoch)
        sampler.skip(trainer.current_epoch, max(done, 0))
        return DataLoader(
            _TaggedPrompts(records), batch_sampler=sampler, collate_fn=collate_rollout_prompts, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader | list:
        if "val" not in self.problems:  # no validation set configured: no validation
            return []
        return DataLoader(self.ppo_records("val"), batch_size=self.eval_batch_size, shuffle=False, collate_fn=list)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.ppo_records("test"), batch_size=self.eval_batch_size, shuffle=False, collate_fn=list)
