"""The generator: a causal LM trained by SFT, evaluated by greedy accuracy, sampled N times per problem.

- ``fit``: prompt-masked next-token loss (packed or padded batches), optimizer and schedule from the config.
- ``validate`` / ``test``: greedy accuracy per level and per easy/hard group, graded by `e2h.grading`; the
  same on a model that was never trained gives the ICL baselines (few-shot prompts come from the data).
- ``predict``: `num_samples` completions per problem, returned as JSONL-ready dicts for `SampleWriter`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from e2h.data.prompts import STOP_STRINGS
from e2h.eval.budget import BUDGET_CHECKS
from e2h.eval.greedy import GreedyAccuracy, solved_exactly
from e2h.generation.sampling import SamplingConfig, generate_completions
from e2h.generation.seeding import stable_seed
from e2h.grading import equivalence_verdict, extract_answer
from e2h.modules.backbone import build_causal_lm
from e2h.modules.common import (
    check_budget,
    forward_batch,
    optimizer_config,
    stop_if_gradients_not_finite,
    stop_if_not_finite,
    stop_if_weights_not_finite,
    write_hf_folder,
)
from e2h.text.encoding import IGNORE_LABEL
from e2h.text.tokenizer import load_tokenizer
from e2h.training.strategies import gathered_parameters, generation_kwargs


BUDGET = "model.init_args.max_new_tokens"


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)


class GeneratorModule(LightningModule):
    def __init__(
        self,
        model: str | None = None,
        model_config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = "sdpa",
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        max_new_tokens: int = 256,
        stop: list[str] | None = None,
        num_samples: int = 1,
        temperature: float = 0.7,
        top_p: float = 1.0,
        top_k: int = 0,
        sample_seed: int = 0,
        log_samples: int = 4,
        generation_backend: str = "generate",
        budget_check: Literal["error", "warn", "off"] = "error",
    ) -> None:
        """
        Args:
            model: a Hugging Face causal LM path or hub id (an e2h export works too).
            model_config: a from-scratch config instead, e.g. ``{model_type: llama, hidden_size: 256, ...}``.
            tokenizer: ``char`` or a tokenizer path/id; default: `model`'s own tokenizer.
            dtype: parameter dtype (``bf16``, ``float32``...); default: the checkpoint's.
            gradient_checkpointing: recompute activations in backward to save memory.
            optimizer, lr_scheduler: injected by LightningCLI (``optimizer: {class_path: torch.optim.AdamW, ...}``).
            max_new_tokens, stop: decoding limits for evaluation and sampling.
            num_samples, temperature, top_p, top_k, sample_seed: sampling for ``predict`` (N per problem).
            log_samples: decoded validation solutions shown in TensorBoard as text.
            generation_backend: ``generate`` (`model.generate`) or ``static`` (`e2h.generation.static_cache`: a
                StaticCache loop, compiled with CUDA graphs on a GPU; same greedy tokens) for evaluation and sampling.
            budget_check: when `max_new_tokens` is shorter than the median reference solution of a level of the
                evaluated problems (`e2h.eval.budget`): stop with the numbers (``error``), only ``warn``, or ``off``.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if budget_check not in BUDGET_CHECKS:
            raise ValueError(f"budget_check must be one of {BUDGET_CHECKS}, got {budget_check!r}")
        if tokenizer is None and model is None:
            raise ValueError("a from-scratch model needs `tokenizer` (e.g. 'char' or a tokenizer path)")
        self.tokenizer = load_tokenizer(tokenizer or model)
        self.optimizer_factory: Callable = optimizer
        self.scheduler_factory: Callable | None = lr_scheduler
        self.model = None
        stop = STOP_STRINGS if stop is None else stop
        self.eval_sampling = SamplingConfig(max_new_tokens=max_new_tokens, stop=tuple(stop), backend=generation_backend)
        self.predict_sampling = SamplingConfig(
            max_new_tokens=max_new_tokens,
            backend=generation_backend,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            stop=self.eval_sampling.stop,
        )
        self.num_samples = num_samples
        self.greedy = GreedyAccuracy(log_samples)

    # --- model -----------------------------------------------------------------------------------------

    def configure_model(self) -> None:
        # Built here, not in __init__, so FSDP / DeepSpeed can shard it as it is created; idempotent.
        if self.model is not None:
            return
        h = self.hparams
        self.model = build_causal_lm(
            h.model, h.model_config, self.tokenizer, h.dtype, h.attn_implementation, h.gradient_checkpointing
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits for a padded batch, or a packed one (which carries `sequence_ids`)."""
        return forward_batch(self.model, batch).logits

    def sft_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over target tokens (targets are already shifted per example), and their count
        (a tensor: reading it would make the host wait for the device)."""
        logits = self(batch)
        targets = batch["targets"]
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_LABEL)
        return loss, (targets != IGNORE_LABEL).sum()

    # --- fit -------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.sft_loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self._last_loss = loss.detach()
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        stop_if_not_finite(getattr(self, "_last_loss", None), "SFT loss", self.global_step)
        stop_if_gradients_not_finite(self, "SFT")

    def configure_optimizers(self):
        return optimizer_config(self.parameters(), self.optimizer_factory, self.scheduler_factory, self.trainer)

    @property
    def uniform_loss(self) -> float:
        """The SFT loss of a model that has learned nothing: a uniform guess over the vocabulary."""
        return math.log(len(self.tokenizer))

    # --- evaluation ------------------------------------------------------------------------------------

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(batch, dict):  # reference solutions: the SFT loss
            loss, n_targets = self.sft_loss(batch)
            self.log("val/loss", loss, prog_bar=True, add_dataloader_idx=False, batch_size=max(int(n_targets), 1))
        else:  # problems: greedy accuracy
            self._grade_greedy(batch)

    def test_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        self._grade_greedy(batch)

    def _grade_greedy(self, problems: list[dict[str, Any]]) -> None:
        with gathered_parameters(self.model):
            self.greedy.grade(self.model, self.tokenizer, problems, self.eval_sampling, generation_kwargs(self))

    def on_validation_start(self) -> None:
        check_budget(self, "val", self.eval_sampling.max_new_tokens, BUDGET, self.hparams.budget_check)

    def on_test_start(self) -> None:
        check_budget(self, "test", self.eval_sampling.max_new_tokens, BUDGET, self.hparams.budget_check)

    def on_predict_start(self) -> None:
        check_budget(self, "predict", self.predict_sampling.max_new_tokens, BUDGET, self.hparams.budget_check)

    def on_validation_epoch_end(self) -> None:
        self.greedy.log_to(self, "val")

    def on_test_epoch_end(self) -> None:
        self.greedy.log_to(self, "test")

    # --- sampling ------------------------------------------------------------------------------------

    def predict_step(self, batch: list[dict[str, Any]], batch_idx: int) -> list[dict[str, Any]]:
        # Seeded per batch from its first problem (a stable hash, not Python's salted one), so the same seed
        # and data give the same samples in every process.
        torch.manual_seed(stable_seed(self.hparams.sample_seed, batch[0]["unique_id"]))
        prompts = [p["prompt"] for p in batch]
        with gathered_parameters(self.model):
            completions = generate_completions(
                self.model, self.tokenizer, prompts, self.predict_sampling, self.num_samples, generation_kwargs(self)
            )
        rows = []
        for p, samples in zip(batch, completions):
            for i, c in enumerate(samples):
                answer = extract_answer(c.text, free_text=not c.clipped)
                verdict = None if p["answer"] is None else equivalence_verdict(answer, p["answer"])
                correct = None if p["answer"] is None else verdict is True
                rows.append(
                    {
                        "problem_id": p["unique_id"],
                        "level": p["level"],
                        "sample_index": i,
                        "prompt": p["prompt"],
                        "completion": c.text,
                        "answer": answer,
                        "gold": p["answer"],
                        "correct": correct,
                        # where an exact step checker exists: right answer from right steps (else None)
                        "solved": None if correct is None else solved_exactly(p, c.text, correct),
                        "num_tokens": c.num_tokens,
                        "clipped": c.clipped,  # cut by max_new_tokens
                        # math-verify ran out of its CPU budget on this answer: graded wrong, counted apart
                        "undecided": p["answer"] is not None and verdict is None,
                    }
                )
        return rows

    # --- export ------------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stop_if_weights_not_finite(self, "SFT checkpoint")
        # Lets `e2h export` rebuild the right module class from a bare checkpoint.
        checkpoint["e2h_module"] = f"{type(self).__module__}.{type(self).__qualname__}"

    def save_hf(self, folder: str) -> None:
        """Write a Hugging Face model folder (weights, config, tokenizer) that `from_pretrained` loads."""
        write_hf_folder(self, "model", folder)
