"""Greedy accuracy of a generator on problems: per level and per easy/hard group, with a few decoded
solutions for TensorBoard. Shared by the generator and PPO modules.

Beside the accuracy it logs what a reader needs to trust it, per subset:

- ``clip_{key}``: the fraction of completions cut by ``max_new_tokens`` (no EOS, no stop string): a cut
  solution graded correct is luck;
- ``solved_{key}``: where an exact checker exists (the generated benchmarks), the fraction whose answer is right
  *and* whose every step is right (`solves` of `e2h.data.exact_check.checker_for`); accuracy minus this is lucky
  answers;
- ``n_{key}``: the number of problems, so standard errors can be computed from the logged figures.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric, MetricCollection, SumMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from e2h.data.records import SUBSET_KEYS, subset_keys
from e2h.data.exact_check import checker_for
from e2h.generation.sampling import SamplingConfig, generate_completions
from e2h.grading import extract_answer, is_equivalent


def solved_exactly(problem: dict[str, Any], completion: str, correct: bool) -> bool | None:
    """Whether a graded-correct completion is also a valid solution, where an exact step checker exists
    (the generated benchmarks); None where none does (e.g. MATH)."""
    checker = checker_for(problem.get("unique_id"))
    if checker is None:
        return None
    return correct and checker.solves(problem["problem"], completion)


class GreedyAccuracy(torch.nn.Module):
    """Accumulates greedy accuracy, clip rate and exact-checker validity over an evaluation epoch, then logs
    `{stage}/acc_{key}`, `{stage}/clip_{key}`, `{stage}/solved_{key}` and `{stage}/n_{key}`.

    A module, so its metric states follow the LightningModule to its device.
    """

    def __init__(self, max_texts: int = 4) -> None:
        super().__init__()
        self.accuracy = MetricCollection({k: MeanMetric() for k in SUBSET_KEYS})
        self.clipped = MetricCollection({k: MeanMetric() for k in SUBSET_KEYS})
        self.solved = MetricCollection({k: MeanMetric() for k in SUBSET_KEYS})
        self.count = MetricCollection({k: SumMetric() for k in SUBSET_KEYS})
        self.max_texts = max_texts
        self.texts: list[str] = []

    def grade(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        problems: list[dict[str, Any]],
        sampling: SamplingConfig,
        generate_kwargs: dict | None = None,
    ) -> None:
        """Decode each problem's prompt (greedy per `sampling`) and grade the answer against its gold."""
        prompts = [p["prompt"] for p in problems]
        completions = generate_completions(model, tokenizer, prompts, sampling, generate_kwargs=generate_kwargs)
        for p, (c,) in zip(problems, completions):
            correct = bool(is_equivalent(extract_answer(c.text, free_text=not c.clipped), p["answer"]))
            solved = solved_exactly(p, c.text, correct)
            for key in subset_keys(p["level"]):
                if key in self.accuracy:
                    self.accuracy[key].update(float(correct))
                    self.clipped[key].update(float(c.clipped))
                    self.count[key].update(1.0)
                    if solved is not None:
                        self.solved[key].update(float(solved))
            if len(self.texts) < self.max_texts:
                verdict = "correct" if correct else "wrong"
                if c.clipped:
                    verdict += ", cut by max_new_tokens"
                self.texts.append(
                    f"**{p['unique_id']}** (level {p['level']}, gold {p['answer']}, {verdict})"
                    f"\n\n```\n{p['prompt']}{c.text}\n```"
                )

    def log_to(self, module: LightningModule, stage: str) -> None:
        """Log the figures of the subsets that received problems (no level without problems), the texts, and
        reset."""
        for name, metrics in (("acc", self.accuracy), ("clip", self.clipped), ("solved", self.solved), ("n", self.count)):
            for key, metric in metrics.items():
                if metric.update_called:
                    module.log(f"{stage}/{name}_{key}", metric.compute(), prog_bar=name == "acc" and key == "all")
                metric.reset()
        experiment = getattr(module.logger, "experiment", None)
        if self.texts and hasattr(experiment, "add_text"):
            experiment.add_text(f"{stage}/samples", "\n\n---\n\n".join(self.texts), module.global_step)
        self.texts = []
