"""Learning-rate schedules injected through LightningCLI (``lr_scheduler: {class_path: ...}``)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR multiplier: linear warm-up from 1/warmup to 1 over `warmup_steps`, then cosine to `min_lr_ratio`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosineLR(LambdaLR):
    """Linear warm-up, then cosine decay to a floor of `min_lr_ratio` x the base LR.

    `total_steps=None` means "the whole run": the module sets it from the trainer's estimated steps.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        last_epoch: int = -1,
    ) -> None:
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        super().__init__(optimizer, self._factor, last_epoch=last_epoch)

    def set_total_steps(self, total_steps: int) -> None:
        self.total_steps = total_steps

    def _factor(self, step: int) -> float:
        if self.total_steps is None:  # before the trainer has told us: hold warm-up/base LR
            return warmup_cosine_factor(step, self.warmup_steps, step + 1, 1.0)
        return warmup_cosine_factor(step, self.warmup_steps, self.total_steps, self.min_lr_ratio)
