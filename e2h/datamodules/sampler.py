"""A shuffling sampler that resumes mid-epoch, so a resumed run sees exactly the batches it had left.

Lightning restores its loop counters from a checkpoint but replays the interrupted epoch's dataloader from
the start. This sampler draws each epoch's order from (seed, epoch) and, when told how many batches of
the current epoch were already trained on, skips them once.
"""

from __future__ import annotations

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
