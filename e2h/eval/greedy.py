"""Greedy accuracy of a generator on problems: per level and per easy/hard group, with a few decoded
solutions for TensorBoard. Shared by the generator and PPO modules."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanMetric, MetricCollection
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from e2h.data.records import SUBSET_KEYS, subset_keys
from e2h.generation.sampling import SamplingConfig, generate_completions
from e2h.grading import extract_answer, is_equivalent


class GreedyAccuracy(torch.nn.Module):
    """Accumulates greedy accuracy over an evaluation epoch, then logs `{stage}/acc_{key}`.

    A module, so its metric states follow the LightningModule to its device.
    """

    def __init__(self, max_texts: int = 4) -> None:
        super().__init__()
        self.accuracy = MetricCollection({k: MeanMetric() for k in SUBSET_KEYS})
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
            correct = float(is_equivalent(extract_answer(c.text), p["answer"]))
            for key in subset_keys(p["level"]):
                if key in self.accuracy:
                    self.accuracy[key].update(correct)
            if len(self.texts) < self.max_texts:
                self.texts.append(
                    f"**{p['unique_id']}** (level {p['level']}, gold {p['answer']}, "
                    f"{'correct' if correct else 'wrong'})\n\n```\n{p['prompt']}{c.text}\n```"
                )

    def log_to(self, module: LightningModule, stage: str) -> None:
        """Log the accuracies that received problems (no level without problems), the texts, and reset."""
        for key, metric in self.accuracy.items():
            if metric.update_called:
                module.log(f"{stage}/acc_{key}", metric.compute(), prog_bar=key == "all")
            metric.reset()
        experiment = getattr(module.logger, "experiment", None)
        if self.texts and hasattr(experiment, "add_text"):
            experiment.add_text(f"{stage}/samples", "\n\n---\n\n".join(self.texts), module.global_step)
        self.texts = []
