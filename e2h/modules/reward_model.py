"""The reward model: a causal-LM backbone with a scalar head, trained as ORM, PRM or OPRM, and a scorer.

ORM, PRM and OPRM are the same model and the same loss fed different labels (the ``supervision``):

- ``outcome`` (ORM): one label per solution, at its final token (the EOS): is the final answer right?
- ``process`` (PRM): one label per step, at the step's last token (or, with ``label_all_step_tokens``, on
  every token of the step, as the official code trains);
- ``both`` (OPRM): process labels on the steps and the outcome label at the end.

The loss is binary cross-entropy with logits, averaged over the labelled positions of a batch.

- ``fit``: that loss on padded or packed batches; optimizer and schedule from the config.
- ``validate`` / ``test``: the loss, and step / outcome accuracy and AUROC overall, per level and per
  easy/hard group. Step metrics read the score at each labelled step's last token; outcome metrics read the
  solution score (the same number ``predict`` writes) against the outcome label.
- ``predict``: score a generator's samples: ``step_scores`` (sigmoid of the head at each step's last
  token) and the solution ``score`` (see `e2h.eval.scoring`), as JSONL-ready dicts for `ScoreWriter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from e2h.data.records import SUBSET_KEYS, subset_keys
from e2h.eval.scoring import SUPERVISIONS, check_reading, default_reading, solution_score
from e2h.modules.common import (
    forward_batch,
    optimizer_config,
    stop_if_gradients_not_finite,
    stop_if_not_finite,
    stop_if_weights_not_finite,
    write_hf_folder,
)
from e2h.modules.reward_head import build_reward_backbone
from e2h.modules.reward_metrics import BinaryScoreMetrics, position_scores
from e2h.text.alignment import values_at
from e2h.text.encoding import IGNORE_LABEL
from e2h.text.tokenizer import load_tokenizer


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)


# ---------------------------------------------------------------------------------------------------------
# Labels and loss


def select_labels(
    batch: Mapping[str, torch.Tensor], supervision: str, label_all_step_tokens: bool = False
) -> torch.Tensor:
    """The per-token targets the loss reads for a supervision (IGNORE_LABEL where there is none).

    ``process``: step labels, on each step's last token (``step_end_labels``) or on all its tokens
    (``step_labels``); ``outcome``: the outcome label at the final token; ``both``: the two together. The
    outcome sits on the EOS, which belongs to no step, so the two never compete for a token; were they to,
    the outcome would win.
    """
    if supervision not in SUPERVISIONS:
        raise ValueError(f"unknown supervision {supervision!r}; choose one of {SUPERVISIONS}")
    steps = batch["step_labels"] if label_all_step_tokens else batch["step_end_labels"]
    if supervision == "process":
        return steps
    outcome = batch["outcome_labels"]
    if supervision == "outcome":
        return outcome
    return torch.where(outcome != IGNORE_LABEL, outcome, steps)


def reward_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean binary cross-entropy with logits over the labelled positions, and how many there were (a
    tensor: reading it would make the host wait for the device).

    A batch without any labelled position (possible when sources are mixed, e.g. an ORM on process-only
    data) gives a zero loss that still depends on the logits, so every rank runs the same backward.
    """
    mask = labels != IGNORE_LABEL
    # Ignored positions get target 0 and weight 0: no boolean indexing, so no host-device sync.
    targets = torch.where(mask, labels, 0.0).float()
    per_token = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    n = mask.sum()
    return (per_token * mask).sum() / n.clamp(min=1), n

# ---------------------------------------------------------------------------------------------------------
# The module


class RewardModelModule(LightningModule):
    def __init__(
        self,
        model: str | None = None,
        model_config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        supervision: str = "process",
        label_all_step_tokens: bool = False,
        aggregation: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = "sdpa",
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        log_samples: int = 4,
    ) -> None:
        """
        Args:
            model: a Hugging Face path or hub id: a base causal LM, a generator export (`e2h export`,
                `ExportHF`) or a reward-model export (to score with, or to train further).
            model_config: a from-scratch config instead, e.g. ``{model_type: llama, hidden_size: 256, ...}``.
            tokenizer: ``char`` or a tokenizer path/id; default: `model`'s own tokenizer.
            supervision: ``outcome`` (ORM), ``process`` (PRM) or ``both`` (OPRM): which labels train the model.
            label_all_step_tokens: put a step's label on all its tokens (the official training), not only on
                its last token (where it is read).
            aggregation: how a solution score is read: ``min``, ``product``, ``last``, ``mean`` of the step
                scores, or ``final`` (the output at the final token). Default: ``final`` for an ORM (its label
                sits there), ``min`` (the official default) for a PRM or OPRM.
            dtype: parameter dtype (``bf16``, ``float32``...); default: the checkpoint's.
            gradient_checkpointing: recompute activations in backward to save memory.
            optimizer, lr_scheduler: injected by LightningCLI (``optimizer: {class_path: torch.optim.AdamW, ...}``).
            log_samples: validation solutions shown in TensorBoard as text, with their step scores.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if supervision not in SUPERVISIONS:
            raise ValueError(f"unknown supervision {supervision!r}; choose one of {SUPERVISIONS}")
        self.reading = check_reading(aggregation) if aggregation is not None else default_reading(supervision)
        if tokenizer is None and model is None:
            raise ValueError("a from-scratch model needs `tokenizer` (e.g. 'char' or a tokenizer path)")
        self.tokenizer = load_tokenizer(tokenizer or model)
        self.optimizer_factory: Callable = optimizer
        self.scheduler_factory: Callable | None = lr_scheduler
        self.model = None
        self.step_metrics = BinaryScoreMetrics(SUBSET_KEYS)
        self.outcome_metrics = BinaryScoreMetrics(SUBSET_KEYS)
        self.position_metrics = BinaryScoreMetrics(SUBSET_KEYS)  # the reference: step position alone
        self._logged_texts: list[str] = []

    # --- model -----------------------------------------------------------------------------------------

    def configure_model(self) -> None:
        # Built here, not in __init__, so FSDP / DeepSpeed can shard it as it is created; idempotent.
        if self.model is not None:
            return
        h = self.hparams
        self.model = build_reward_backbone(
            h.model, h.model_config, self.tokenizer, h.dtype, h.attn_implementation, h.gradient_checkpointing
        )

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Per-token reward logits ``[B, T]`` (float32) for a padded batch, or a packed one (which carries
        `sequence_ids`: its examples are kept apart by a block-causal mask)."""
        return forward_batch(self.model, batch).logits.squeeze(-1).float()

    def loss(
        self, batch: Mapping[str, torch.Tensor], logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The supervision's loss on a batch and the number of labelled positions."""
        if logits is None:
            logits = self(batch)
        labels = select_labels(batch, self.hparams.supervision, self.hparams.label_all_step_tokens)
        return reward_loss(logits, labels)

    # --- fit -------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # Catch a supervision the training data cannot serve before any compute is spent on it.
        counts = getattr(getattr(self.trainer, "datamodule", None), "label_counts", {}).get("train")
        if stage != "fit" or not counts:
            return
        have = {
            "process": counts["process_0"] + counts["process_1"] > 0,
            "outcome": counts["outcome_0"] + counts["outcome_1"] > 0,
        }
        needed = ["process", "outcome"] if self.hparams.supervision == "both" else [self.hparams.supervision]
        lacking = [kind for kind in needed if not have[kind]]
        if lacking:
            raise ValueError(
                f"supervision {self.hparams.supervision!r} needs {' and '.join(lacking)} labels, but the training "
                f"data has none (labelled positions: {counts}); add a source that carries them"
            )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, n_labels = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/labelled_positions", n_labels.float(), reduce_fx="sum")
        self._last_loss = loss.detach()
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        stop_if_not_finite(
            getattr(self, "_last_loss", None), "reward-model loss", self.global_step,
            "Lower the learning rate or check the data.",
        )
        stop_if_gradients_not_finite(self, "reward model")

    def configure_optimizers(self):
        return optimizer_config(self.parameters(), self.optimizer_factory, self.scheduler_factory, self.trainer)

    # --- scores ----------------------------------------------------------------------------------------

    def solution_scores(
        self, probs: torch.Tensor, step_end_positions: Sequence[Sequence[int]], final_positions: Sequence[int]
    ) -> list[tuple[list[float], float]]:
        """Per row: the step scores (probabilities at the step ends) and the solution score (`self.reading`)."""
        probs = probs.detach().cpu()  # one transfer, not one per value read
        out = []
        for b, ends in enumerate(step_end_positions):
            step_scores = values_at(probs[b], ends)
            final = float(probs[b, final_positions[b]])
            out.append((step_scores, solution_score(step_scores, final, self.reading)))
        return out

    # --- evaluation ------------------------------------------------------------------------------------

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        logits = self(batch)
        loss, n_labels = self.loss(batch, logits)
        if int(n_labels):
            self.log(f"{stage}/loss", loss, prog_bar=True, add_dataloader_idx=False, batch_size=int(n_labels))
        probs = torch.sigmoid(logits)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        scores = self.solution_scores(probs, batch["step_end_positions"], [n - 1 for n in lengths])
        # Scores and targets gathered per key over the batch, so each metric is updated once per batch.
        gathered: dict[tuple[str, str], list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for b, level in enumerate(batch["level"]):
            step_mask = batch["step_end_labels"][b] != IGNORE_LABEL
            outcome_mask = batch["outcome_labels"][b] != IGNORE_LABEL
            step = (probs[b][step_mask], batch["step_end_labels"][b][step_mask])
            position = (position_scores(int(step_mask.sum()), probs.device), step[1])
            n_outcome = int(outcome_mask.sum())
            outcome = (probs.new_full((n_outcome,), scores[b][1]), batch["outcome_labels"][b][outcome_mask])
            for key in subset_keys(level):
                gathered.setdefault(("step", key), []).append(step)
                gathered.setdefault(("outcome", key), []).append(outcome)
                gathered.setdefault(("position", key), []).append(position)
            if len(self._logged_texts) < self.hparams.log_samples:
                self._logged_texts.append(self._describe(batch, b, scores[b]))
        metrics = {"step": self.step_metrics, "outcome": self.outcome_metrics, "position": self.position_metrics}
        for (kind, key), pairs in gathered.items():
            metrics[kind].update(torch.cat([p for p, _ in pairs]), torch.cat([t for _, t in pairs]), key)

    def _describe(self, batch: dict[str, Any], b: int, scores: tuple[list[float], float]) -> str:
        """A validation solution as Markdown: the text, then each step's label and score."""
        n = int(batch["attention_mask"][b].sum())
        text = self.tokenizer.decode(batch["input_ids"][b][:n].tolist())
        rows = []
        for i, position in enumerate(batch["step_end_positions"][b]):
            label = float(batch["step_end_labels"][b][position])
            rows.append(f"| {i} | {'-' if label == IGNORE_LABEL else int(label)} | {scores[0][i]:.3f} |")
        outcome = batch["outcome_labels"][b][n - 1]
        outcome_text = "-" if float(outcome) == IGNORE_LABEL else int(outcome)
        return (
            f"**{batch['unique_id'][b]}** (level {batch['level'][b]}, outcome {outcome_text}, "
            f"score {scores[1]:.3f} by {self.reading})\n\n```\n{text}\n```\n\n| step | label | score |\n|---|---|---|\n"
            + "\n".join(rows)
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        for kind, metrics in (("step", self.step_metrics), ("outcome", self.outcome_metrics)):
            for name, value in metrics.compute().items():
                self.log(f"{stage}/{kind}_{name}", value, prog_bar=name == "auroc_all")
        # Beside step_auroc_*: the AUROC of the step's position alone, the reference a step check must beat.
        for name, value in self.position_metrics.compute().items():
            if name.startswith("auroc_"):
                self.log(f"{stage}/step_position_{name}", value)
        experiment = getattr(self.logger, "experiment", None)
        if self._logged_texts and hasattr(experiment, "add_text"):
            experiment.add_text(f"{stage}/solutions", "\n\n---\n\n".join(self._logged_texts), self.global_step)
        self._logged_texts = []

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # --- scoring -----------------------------------------------------------------------------------------

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """The batch's sample lines with ``steps``, ``step_scores`` and the solution ``score`` added."""
        probs = torch.sigmoid(self(batch))
        scores = self.solution_scores(probs, batch["step_end_positions"], batch["outcome_position"])
        return [
            {**sample, "steps": list(steps), "step_scores": step_scores, "score": score}
            for sample, steps, (step_scores, score) in zip(batch["sample"], batch["steps"], scores, strict=True)
        ]

    # --- export ------------------------------------------------------------------------------------------

    # The binary cross entropy of a model that has learned nothing (a constant 0.5).
    uniform_loss = math.log(2)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stop_if_weights_not_finite(self, "reward-model checkpoint")
        # Lets `e2h export` rebuild the right module class from a bare checkpoint.
        checkpoint["e2h_module"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def save_hf(self, folder: str) -> None:
        """Write a Hugging Face folder (weights, config, tokenizer) that ``AutoModelForTokenClassification``
        loads, and that `RewardModelModule(model=folder)` scores with (its trained head is kept)."""
        write_hf_folder(self, "model", folder)
