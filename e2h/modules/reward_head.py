"""The reward model's backbone: a causal-LM decoder with a one-output per-token head
(``AutoModelForTokenClassification``), shared by the reward model and PPO's value and reward models."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForTokenClassification, PreTrainedModel, PreTrainedTokenizerBase

from e2h.modules.backbone import from_scratch_config, load_kwargs, prepare_for_training

# Names Hugging Face gives the per-token head of *ForTokenClassification models (Llama, Qwen, Mistral...:
# `score`; GPT-2, BERT-likes: `classifier`).
HEAD_NAMES = ("score", "classifier")


def scalar_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and the Linear layer of a token-classification model's one-output head."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            if head.out_features != 1:
                raise ValueError(f"{type(model).__name__}.{name} has {head.out_features} outputs; a reward head has 1")
            return name, head
    raise ValueError(f"{type(model).__name__} has no per-token head named one of {HEAD_NAMES}")


def build_reward_backbone(
    model: str | None,
    model_config: Mapping[str, Any] | None,
    tokenizer: PreTrainedTokenizerBase,
    dtype: str | None = None,
    attn_implementation: str | None = "sdpa",
    gradient_checkpointing: bool = False,
) -> PreTrainedModel:
    """A causal-LM decoder with a one-output per-token head (``AutoModelForTokenClassification``).

    `model` is a path or hub id: a base model, a generator export (its causal-LM head is dropped; for Llama
    the decoder is loaded and a ``score`` Linear added) or a reward-model export (its trained head is kept).
    `model_config` builds one from scratch instead (a dict with ``model_type``; vocabulary size and special
    ids come from the tokenizer). A newly created head is zero-initialised, as the official code does, so
    every score starts at sigmoid(0) = 0.5 and the first steps do not push random head gradients into the
    backbone. The head's dropout is switched off (the official head has none; Hugging Face defaults to 0.1).
    """
    kwargs = load_kwargs(model, model_config, dtype, attn_implementation)
    if model is not None:
        config = AutoConfig.from_pretrained(model, num_labels=1)
        # Set as an attribute: passed as a from_pretrained keyword it is not kept by every config class.
        config.classifier_dropout = 0.0
        rm, info = AutoModelForTokenClassification.from_pretrained(
            model, config=config, output_loading_info=True, **kwargs
        )
        missing = set(info["missing_keys"])
    else:
        config = from_scratch_config(model_config, tokenizer, num_labels=1)
        config.classifier_dropout = 0.0
        rm = AutoModelForTokenClassification.from_config(config, **kwargs)
        missing = None  # everything is new
    name, head = scalar_head(rm)
    if missing is None or any(key.split(".")[0] == name for key in missing):
        with torch.no_grad():
            head.weight.zero_()
            if head.bias is not None:
                head.bias.zero_()
    return prepare_for_training(rm, tokenizer, gradient_checkpointing)
