"""Training samplers that resume mid-epoch, so a resumed run sees exactly the batches it had left.

Lightning restores its loop counters from a checkpoint but replays the interrupted epoch's dataloader from
the start. A `ResumableSampler` draws each epoch's order from (seed, epoch) and, told how much of the current
epoch was already trained on (`resume`), skips it once. `RolloutBatchSampler` is the same sampler yielding
PPO's rollout batches instead of single items.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from e2h.rl.rollout import RolloutPlan


class ResumableSampler(Sampler):
    """Yields the units of an epoch (here: item indices) in an order drawn from (seed, epoch), after skipping
    those a resumed run already trained on. Subclasses choose the units (`units`, `num_units`)."""

    def __init__(self, num_items: int, shuffle: bool = True, seed: int = 0) -> None:
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, units to skip in it)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def skip(self, epoch: int, num_units: int) -> None:
        """In `epoch`, start after its first `num_units` units (the part of the epoch already trained on)."""
        self._skip = (epoch, num_units)

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()

    def units(self, epoch: int) -> list[Any]:
        """What an epoch yields, in order: its item order."""
        return self.order(epoch)

    def num_units(self) -> int:
        """How many units an epoch has (without drawing its order)."""
        return self.num_items

    def _skipped(self) -> int:
        return self._skip[1] if self._skip and self._skip[0] == self.epoch else 0

    def __iter__(self) -> Iterator[Any]:
        return iter(self.units(self.epoch)[self._skipped():])

    def __len__(self) -> int:
        return self.num_units() - self._skipped()


def resume(sampler: ResumableSampler, trainer: Any, batches_per_epoch: int, units_per_batch: int = 1) -> None:
    """Set `sampler` to the trainer's epoch, skipping the batches of it a resumed fit already trained on.

    Lightning restores its step counter before asking for the loader, so the loader batches this epoch already
    used follow from the global step, gradient accumulation and the number of batches per epoch.
    """
    done = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * batches_per_epoch
    sampler.set_epoch(trainer.current_epoch)
    sampler.skip(trainer.current_epoch, max(done, 0) * units_per_batch)


def training_sampler(num_items: int, batch_size: int, shuffle: bool, seed: int, trainer=None) -> ResumableSampler:
    """A `ResumableSampler` for a training loader of `batch_size`, resumed where a fit left it. Without a
    trainer (or without shuffling) nothing is skipped."""
    sampler = ResumableSampler(num_items, shuffle=shuffle, seed=seed)
    if shuffle and trainer is not None:
        # Under DDP Lightning deals this sampler's order out to the ranks, each taking its share.
        resume(sampler, trainer, math.ceil(num_items / batch_size), batch_size * trainer.world_size)
    return sampler


class RolloutBatchSampler(ResumableSampler):
    """Yields each rollout's prompt indices `plan.batches_per_rollout` times in a row, as
    ``(item, rollout, position)`` tuples.

    Epoch ``e`` is a permutation of the items drawn from ``(seed, e)``, cut into rollouts of
    ``plan.prompts_per_rollout`` prompts per device (a last incomplete one is dropped, so every rollout has the
    same size and statistics). ``rollout`` counts rollouts from the start of training (``e x rollouts per
    epoch + r``), which seeds the rollout's sampling; ``position`` runs over the rollout's loader batches.

    With several devices every rank draws the same permutation and takes its own slice of each rollout
    (Lightning's distributed sampler must stay off: ``use_distributed_sampler: false``).
    """

    def __init__(self, num_items: int, plan: RolloutPlan, shuffle: bool = True, seed: int = 0, rank: int = 0) -> None:
        if not 0 <= rank < plan.world:
            raise ValueError(f"rank {rank} outside a world of {plan.world}")
        if num_items < plan.rollout:
            raise ValueError(f"{num_items} training prompts cannot fill one rollout of {plan.rollout}; "
                             "add prompts or lower the rollout batch")
        super().__init__(num_items, shuffle, seed)
        self.plan, self.rank = plan, rank

    @property
    def rollouts_per_epoch(self) -> int:
        return self.num_items // self.plan.rollout

    def num_units(self) -> int:
        return self.rollouts_per_epoch * self.plan.batches_per_rollout

    def units(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        order, n = self.order(epoch), self.plan.prompts_per_rollout
        batches = []
        for batch_index in range(self.num_units()):
            r, position = divmod(batch_index, self.plan.batches_per_rollout)
            start = (r * self.plan.world + self.rank) * n
            rollout = epoch * self.rollouts_per_epoch + r
            batches.append([(item, rollout, position) for item in order[start : start + n]])
        return batches
