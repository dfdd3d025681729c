"""A shuffling sampler that resumes mid-epoch, so a resumed run sees exactly the batches it had left.

Lightning restores its loop counters from a checkpoint but replays the interrupted epoch's dataloader from
the start. This sampler draws each epoch's order from (seed, epoch) and, when told how many batches of
the current epoch were already trained on, skips them once.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(self, num_items: int, shuffle: bool = True, seed: int = 0) -> None:
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, items to skip in it)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = epoch

    def skip(self, epoch: int, num_items: int) -> None:
        """In `epoch`, start after its first `num_items` (the part of the epoch already trained on)."""
        self._skip = (epoch, num_items)

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_items, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        skip = self._skip[1] if self._skip and self._skip[0] == self.epoch else 0
        return iter(self.order(self.epoch)[skip:])

    def __len__(self) -> int:
        skip = self._skip[1] if self._skip and self._skip[0] == self.epoch else 0
        return self.num_items - skip


def training_sampler(num_items: int, batch_size: int, shuffle: bool, seed: int, trainer=None) -> ResumableSampler:
    """A `ResumableSampler` for a training loader, set to skip what a resumed fit already trained on.

    Lightning restores its step counter before asking for the loader, so the batches this epoch already
    used follow from the global step, gradient accumulation and the number of batches per epoch. Without a
    trainer (or without shuffling) nothing is skipped.
    """
    sampler = ResumableSampler(num_items, shuffle=shuffle, seed=seed)
    if shuffle and trainer is not None:
        batches_per_epoch = math.ceil(num_items / batch_size)
        done = trainer.global_step * trainer.accumulate_grad_batches - trainer.current_epoch * batches_per_epoch
        sampler.set_epoch(trainer.current_epoch)
        # Under DDP Lightning deals this sampler's order out to the ranks, each taking its share.
        sampler.skip(trainer.current_epoch, max(done, 0) * batch_size * trainer.world_size)
    return sampler
