"""The reward model's validation metrics: accuracy and AUROC of scores against 0/1 labels, per subset."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC, BinaryStatScores


class BinaryScoreMetrics(nn.Module):
    """Accuracy (threshold 0.5) and AUROC of scores in [0, 1] against 0/1 labels, per key (all, easy, hard,
    level_k). A key is logged only once it received a score; its AUROC only once it saw both classes."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__()
        self.stats = nn.ModuleDict({k: BinaryStatScores(threshold=0.5) for k in keys})
        self.auroc = nn.ModuleDict({k: BinaryAUROC() for k in keys})

    def update(self, scores: torch.Tensor, targets: torch.Tensor, key: str) -> None:
        if key in self.stats and scores.numel():
            targets = targets.long()
            self.stats[key].update(scores, targets)
            self.auroc[key].update(scores, targets)

    def compute(self) -> dict[str, float]:
        """{``acc_KEY``, ``auroc_KEY``: value} for the keys that can be measured; then resets."""
        out: dict[str, float] = {}
        for key, stat in self.stats.items():
            if stat.update_called:
                tp, fp, tn, fn, _support = (float(v) for v in stat.compute())
                out[f"acc_{key}"] = (tp + tn) / (tp + fp + tn + fn)
                if tp + fn > 0 and tn + fp > 0:  # both classes: AUROC is defined
                    out[f"auroc_{key}"] = float(self.auroc[key].compute())
            stat.reset()
            self.auroc[key].reset()
        return out


def position_scores(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Scores for a solution's `n` labelled steps by their position alone, 1, 1/2, 1/3, ...: the reference
    that reads nothing. A step is wrong only at or after a solution's first error, so later steps are wrong
    more often, and a step AUROC means a step check only above this one's."""
    return 1.0 / torch.arange(1, n + 1, dtype=torch.float32, device=device)
