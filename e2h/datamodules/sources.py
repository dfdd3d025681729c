"""Where data come from, as configs name it.

A `ProblemSource` is a problem set (a local file, a Hugging Face dataset id, or the synthetic benchmark)::

    train: {source: ../shared/data/math/train.jsonl, levels: [1, 2, 3]}
    val:   {source: synthetic, split: test, levels: [1, 2, 3, 4, 5], limit: 100}

A `StepSource` is a set of step-labelled solutions for a reward model (a step-labelled JSONL, the synthetic
benchmark's solutions, or a generator's graded samples)::

    train:
      - {kind: steps, path: runs/prm800k_easy.jsonl}
      - {kind: synthetic, split: train, levels: [1, 2, 3], wrong_fraction: 0.5}
      - {kind: samples, path: runs/train_samples.jsonl, levels: [1, 2, 3]}
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from e2h.data.files import read_jsonl
from e2h.data.prompts import PromptFormat
from e2h.data.records import Problem, exclude_held_out, filter_levels, load_problems
from e2h.data.samples import sample_lines, sample_solution
from e2h.data.step_solutions import StepSolution
from e2h.generation.seeding import stable_seed

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
CHAINS = "chains"
SYNTHETIC_PER_LEVEL = {"train": 2000, "test": 60}
"""The synthetic benchmark's size: problems per level of its train and test splits (what every config uses)."""
STEP_SOURCE_KINDS = ("steps", "synthetic", "samples")


@dataclass
class ProblemSource:
    """A problem set and its selection.

    source: local .jsonl/.json/.parquet, a hub dataset id, or a benchmark generated in memory: ``synthetic``
        (`e2h.data.synthetic`) or ``chains`` (`e2h.data.chains`).
    split: the hub split, or the generated benchmark's split (``train`` / ``test``, disjoint).
    levels: keep only these levels (None: all).
    limit: keep at most this many problems after filtering, drawn with `seed` (None: all).
    synthetic_per_level: problems per level of the generated splits ``train`` and ``test`` (default
        `SYNTHETIC_PER_LEVEL`; a split left out keeps its default).
    fillers: ``chains`` only: the probability of one more filler step before each step of a train solution
        (`e2h.data.chains.with_fillers`; 0, the default, writes none).
    """

    source: str = SYNTHETIC
    split: str = "train"
    levels: list[int] | None = None
    limit: int | None = None
    seed: int = 0
    synthetic_per_level: dict[str, int] = field(default_factory=lambda: dict(SYNTHETIC_PER_LEVEL))
    fillers: float = 0.0

    def __post_init__(self) -> None:
        if self.fillers and self.source != CHAINS:
            raise ValueError(f"`fillers` applies to source {CHAINS!r} only, not {self.source!r}")

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
        if self.source not in (SYNTHETIC, CHAINS):
            return load_problems(self.source, split=self.split)
        if self.split not in ("train", "test"):
            raise ValueError(f"{self.source} split must be 'train' or 'test', got {self.split!r}")
        sizes = {**SYNTHETIC_PER_LEVEL, **self.synthetic_per_level}
        if self.source == CHAINS:
            from e2h.data import chains

            train, test = chains.benchmark_splits(sizes["train"], sizes["test"], seed=self.seed, fillers=self.fillers)
        else:
            from e2h.data.synthetic import benchmark_splits

            train, test = benchmark_splits(sizes["train"], sizes["test"], seed=self.seed)
        return train if self.split == "train" else test


@dataclass(frozen=True)
class LabelledExample:
    """One solution to encode: its labels, the prompt it is read behind, and where it came from (for errors)."""

    solution: StepSolution
    prompt: str
    where: str


@dataclass
class StepSource:
    """One source of step-labelled solutions.

    kind: ``steps`` (a step-labelled JSONL, e.g. converted PRM800K or `e2h data synth`'s train_steps.jsonl),
        ``synthetic`` (a generated benchmark's step solutions, made in memory) or ``samples`` (a
        generator's samples JSONL: outcome label = the line's ``correct``; lines without a gold answer are
        skipped).
    path: the file, for ``steps`` and ``samples``.
    source: for ``synthetic``: which generated benchmark, ``synthetic`` or ``chains`` (as `ProblemSource.source`).
    levels: keep only these levels (None: all; a level filter drops records of unknown level).
    limit: keep at most this many solutions after filtering, drawn with `seed` (None: all).
    seed: the synthetic benchmark's seed (as `ProblemSource.seed`) and the draws of wrong steps and `limit`.
    split, synthetic_per_level: the synthetic split (``train`` / ``test``) and the benchmark's size per
        level, as in `ProblemSource` (use the same sizes as the generator's config, so that the test split
        stays disjoint from the problems trained on).
    wrong_fraction: share of synthetic solutions given one wrong step.
    error_kinds: what goes wrong in those steps (the benchmark's ``corrupt_steps``). Synthetic: ``result`` (an
        arithmetic slip), ``operation`` (the operation miscopied), ``restatement`` (the remainder miscopied).
        Chains: ``result``, ``operation``, ``pointer`` (the chain ended early, a hard level's main error).
    fillers: for ``synthetic`` of source ``chains``: the probability of one more filler step before each step
        (as `ProblemSource.fillers`). Match the generator's: a PRM learns its checks only in solutions that
        look like the ones it will score.
    process_labels: for ``samples`` of generated problems (ids ``synthetic/...`` or ``chains/...``): label every
        step exactly with the benchmark's checker (PRM800K convention: None after the first wrong step).
    label_fillers: with `process_labels`, whether filler steps (``~``, always right) are labelled 1. Set it
        false on validation sources, so step AUROC counts only the steps that compute something (fillers
        counted as right steps lift it). Training keeps them: a PRM trained without them scored worse.
    """

    kind: str = "synthetic"
    path: str | None = None
    source: str = SYNTHETIC
    levels: list[int] | None = None
    limit: int | None = None
    seed: int = 0
    split: str = "train"
    synthetic_per_level: dict[str, int] = field(default_factory=lambda: dict(SYNTHETIC_PER_LEVEL))
    wrong_fraction: float = 0.5
    error_kinds: list[str] = field(default_factory=lambda: ["result"])
    process_labels: bool = False
    label_fillers: bool = True
    fillers: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in STEP_SOURCE_KINDS:
            raise ValueError(f"step source kind must be one of {STEP_SOURCE_KINDS}, got {self.kind!r}")
        if self.kind in ("steps", "samples") and not self.path:
            raise ValueError(f"a {self.kind!r} source needs `path` (a JSONL file)")
        if self.kind == "synthetic" and self.path:
            raise ValueError("a 'synthetic' source is generated in memory; it takes no `path` (use kind: steps)")
        if self.source not in (SYNTHETIC, CHAINS):
            raise ValueError(f"`source` names a generated benchmark, {SYNTHETIC!r} or {CHAINS!r}; got {self.source!r}")
        if self.fillers and (self.kind, self.source) != ("synthetic", CHAINS):
            raise ValueError(f"`fillers` applies to 'synthetic' step sources of source {CHAINS!r} only")
        if self.source != SYNTHETIC and self.kind != "synthetic":
            raise ValueError(f"`source` applies to 'synthetic' step sources only (a {self.kind!r} source reads `path`)")
        if self.process_labels and self.kind != "samples":
            raise ValueError("`process_labels` applies to 'samples' sources (the others carry their own labels)")
        if not self.label_fillers and not self.process_labels:
            raise ValueError("`label_fillers` applies with `process_labels: true` (it chooses which steps get labels)")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be positive or null, got {self.limit}")

    def describe(self) -> str:
        where = f"{self.kind} {self.path}" if self.path else f"{self.source} {self.split} split"
        return where + (f" levels {self.levels}" if self.levels else "")

    def load(self, fmt: PromptFormat) -> list[LabelledExample]:
        """The source's solutions, level-filtered and limited, each with its prompt."""
        if self.kind == "synthetic":
            examples = self._synthetic(fmt)
        elif self.kind == "steps":
            examples = self._steps_file(fmt)
        else:
            examples = self._samples_file()
        examples = filter_levels(
            examples, self.levels, level_of=lambda e: e.solution.level, noun="solution", where=self.describe()
        )
        if self.limit is not None and self.limit < len(examples):
            # A seeded draw, kept in the source's order so per-level reports stay readable. Its own stream:
            # drawn with random.Random(seed), the same stream that chose which synthetic solutions go wrong,
            # it would keep exactly the corrupted ones.
            rng = random.Random(stable_seed("e2h.step_source.limit", self.seed))
            keep = sorted(rng.sample(range(len(examples)), self.limit))
            examples = [examples[i] for i in keep]
        return examples

    def _synthetic(self, fmt: PromptFormat) -> list[LabelledExample]:
        from e2h.data import chains, synthetic

        # All levels are generated and then filtered, exactly as ProblemSource does, so the problems are the
        # same ones the generator's configs train and test on.
        problems = ProblemSource(
            source=self.source,
            split=self.split,
            levels=self.levels,
            seed=self.seed,
            synthetic_per_level=self.synthetic_per_level,
        ).load()
        if self.source == CHAINS:
            solutions = chains.generate_step_solutions(
                problems, self.wrong_fraction, self.seed, self.error_kinds, self.fillers
            )
        else:
            solutions = synthetic.generate_step_solutions(problems, self.wrong_fraction, self.seed, self.error_kinds)
        where = f"{self.source} {self.split} split"
        return [LabelledExample(s, fmt.prompt(s.problem), f"{where}, {s.unique_id}") for s in solutions]

    def _steps_file(self, fmt: PromptFormat) -> list[LabelledExample]:
        examples = []
        for lineno, row in read_jsonl(self.path):
            where = f"{self.path}:{lineno}"
            solution = StepSolution.from_dict(row, where)
            examples.append(LabelledExample(solution, fmt.prompt(solution.problem), where))
        return examples

    def _samples_file(self) -> list[LabelledExample]:
        examples, no_gold = [], 0
        for lineno, row in sample_lines(self.path):
            where = f"{self.path}:{lineno}"
            if row["gold"] is None:
                no_gold += 1  # no reference answer, so no outcome label
                continue
            examples.append(LabelledExample(
                sample_solution(row, self.process_labels, where, self.label_fillers), row["prompt"], where
            ))
        if no_gold:
            log.info("%s: skipped %d sample(s) without a gold answer", self.path, no_gold)
        return examples
