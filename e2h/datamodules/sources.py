"""Where problems come from: a local file, a Hugging Face dataset id, or the synthetic benchmark.

A `ProblemSource` is what a config names::

    train: {source: ../shared/data/math/train.jsonl, levels: [1, 2, 3]}
    val:   {source: synthetic, split: test, levels: [1, 2, 3, 4, 5], limit: 100}
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from e2h.data.records import Problem, exclude_held_out, filter_levels, load_problems

SYNTHETIC = "synthetic"


@dataclass
class ProblemSource:
    """A problem set and its selection.

    source: local .jsonl/.json/.parquet, a hub dataset id, or ``synthetic`` (generated in memory).
    split: the hub split, or the synthetic split (``train`` / ``test``, disjoint).
    levels: keep only these levels (None: all).
    limit: keep at most this many problems after filtering, drawn with `seed` (None: all).
    synthetic_per_level: problems per level of the synthetic split ``train`` and ``test``.
    """

    source: str = SYNTHETIC
    split: str = "train"
    levels: list[int] | None = None
    limit: int | None = None
    seed: int = 0
    synthetic_per_level: dict[str, int] = field(default_factory=lambda: {"train": 2000, "test": 100})

    def load(self, held_out: list[Problem] | None = None) -> list[Problem]:
        problems = self._load_all()
        if held_out:
            problems = exclude_held_out(problems, held_out)
        problems = filter_levels(problems, self.levels)
        if self.limit is not None and self.limit < len(problems):
            # A seeded draw, kept in the source's order so per-level reports stay readable.
            keep = sorted(random.Random(self.seed).sample(range(len(problems)), self.limit))
            problems = [problems[i] for i in keep]
        return problems

    def _load_all(self) -> list[Problem]:
        if self.source != SYNTHETIC:
            return load_problems(self.source, split=self.split)
        from e2h.data.synthetic import benchmark_splits

        if self.split not in ("train", "test"):
            raise ValueError(f"synthetic split must be 'train' or 'test', got {self.split!r}")
        sizes = {"train": 2000, "test": 100, **self.synthetic_per_level}
        train, test = benchmark_splits(sizes["train"], sizes["test"], seed=self.seed)
        return train if self.split == "train" else test
