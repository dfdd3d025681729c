"""Iterative DPO's trainer: the generator fine-tuned on preference pairs against a frozen reference
(Rafailov et al. 2023; the loss is `e2h.rl.dpo`).

A `GeneratorModule` in everything but its training step: validation and test are greedy accuracy by level,
``predict`` samples the next round's solutions, the export is the policy. One round of iterative DPO is:
sample N solutions per training problem with the current policy (``e2h predict``), score them with the
easy-trained reward model, build pairs (``e2h data pairs``: best against worst per problem, by the easy final
answer where it may be read and by the reward model where it is hidden), then fit this module from the
current policy with the current policy as the reference. ``configs/tiny/dpo.yaml`` is one round.

TensorBoard: ``train/loss``, and per pair the implicit rewards ``train/rewards/chosen`` and
``train/rewards/rejected`` (beta x the log-likelihood ratio to the reference), their ``margin`` and the share
of pairs where the chosen one is ahead (``accuracy``).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from transformers import PreTrainedModel

from e2h.modules.backbone import build_causal_lm
from e2h.modules.common import (
    drop_frozen,
    forward_batch,
    stop_if_gradients_not_finite,
    stop_if_not_finite,
    with_frozen,
)
from e2h.modules.generator import GeneratorModule
from e2h.rl.dpo import dpo_loss, sequence_logp
from e2h.text.encoding import IGNORE_LABEL

FROZEN = ("reference",)


class DPOModule(GeneratorModule):
    def __init__(self, beta: float = 0.1, reference: str | None = None, **kwargs: Any) -> None:
        """
        Args:
            beta: the DPO temperature: how strongly the policy is held to the reference (the paper's DPO
                default, 0.1).
            reference: the frozen reference policy, a causal-LM path; default: the policy's starting weights
                (`model`, or a copy of a from-scratch `model_config`).
            Every other argument is `GeneratorModule`'s (model, tokenizer, optimizer, decoding for evaluation
            and sampling).
        """
        super().__init__(**kwargs)
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        self.reference: PreTrainedModel | None = None

    def configure_model(self) -> None:
        if self.model is not None:
            return
        super().configure_model()
        h = self.hparams
        if h.reference is not None or h.model is not None:
            self.reference = build_causal_lm(h.reference or h.model, None, self.tokenizer, h.dtype,
                                             h.attn_implementation)
        else:  # from scratch: the reference is the policy's starting point
            self.reference = copy.deepcopy(self.model)
        self.reference.requires_grad_(False)
        self.reference.eval()

    def train(self, mode: bool = True) -> DPOModule:
        super().train(mode)
        if self.reference is not None:  # no dropout in the reference's log-probs
            self.reference.eval()
        return self

    @property
    def uniform_loss(self) -> float:
        """The loss of a policy that prefers neither side (every implicit reward 0): ln 2."""
        return math.log(2)

    # --- fit -------------------------------------------------------------------------------------------

    @staticmethod
    def _sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` log-probabilities of the labelled (response) tokens of each row."""
        logits = forward_batch(model, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}).logits
        labels = batch["labels"][:, 1:]
        mask = labels != IGNORE_LABEL
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        token_logp = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return sequence_logp(token_logp, mask)

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        with torch.no_grad():
            reference = [self._sequence_logps(self.reference, batch[side]) for side in ("chosen", "rejected")]
        policy = [self._sequence_logps(self.model, batch[side]) for side in ("chosen", "rejected")]
        terms = dpo_loss(policy[0], policy[1], reference[0], reference[1], self.hparams.beta)
        n = len(terms.margins)
        self.log("train/loss", terms.loss, prog_bar=True, batch_size=n)
        for name, value in (("chosen", terms.chosen_rewards), ("rejected", terms.rejected_rewards),
                            ("margin", terms.margins), ("accuracy", terms.accuracy)):
            self.log(f"train/rewards/{name}", value.mean(), batch_size=n)
        self._last_loss = terms.loss.detach()
        return terms.loss

    def on_before_optimizer_step(self, optimizer) -> None:
        stop_if_not_finite(getattr(self, "_last_loss", None), "DPO loss", self.global_step)
        stop_if_gradients_not_finite(self, "DPO")

    # --- checkpoints -----------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        drop_frozen(checkpoint, FROZEN)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """With the reference's weights (left out of checkpoints) taken from the model built from its path."""
        if self.reference is not None:
            state_dict = with_frozen(self, state_dict, FROZEN)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
