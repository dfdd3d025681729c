"""Backbone loading shared by every module: a Hugging Face causal LM from a path or hub id, or built from a
config for from-scratch runs (the tiny CPU default).

The same path is taken for a user's 7B model and the tests' tiny model (saved with `save_pretrained` in a
temporary folder), so what the tests load is what a user loads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from e2h.data.files import require_local_path
from e2h.text.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(name: str | None) -> torch.dtype | None:
    """A dtype from its name ('bf16', 'float32', ...); None keeps the checkpoint's dtype."""
    if name is None or name == "auto":
        return None
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(DTYPES)} or 'auto'") from None


def from_scratch_config(
    model_config: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase, **overrides: Any
) -> PretrainedConfig:
    """A model config from a dict with `model_type`; vocabulary size and special-token ids come from the
    tokenizer unless given, so a config in YAML only states the architecture."""
    cfg = dict(model_config)
    model_type = cfg.pop("model_type", None)
    if model_type is None:
        raise ValueError("model_config needs a `model_type` (e.g. llama)")
    cfg.setdefault("vocab_size", len(tokenizer))
    cfg.setdefault("pad_token_id", tokenizer.pad_token_id)
    cfg.setdefault("bos_token_id", tokenizer.bos_token_id)
    cfg.setdefault("eos_token_id", tokenizer.eos_token_id)
    return AutoConfig.for_model(model_type, **cfg, **overrides)


def build_causal_lm(
    model: str | None,
    model_config: Mapping[str, Any] | None,
    tokenizer: PreTrainedTokenizerBase,
    dtype: str | None = None,
    attn_implementation: str | None = "sdpa",
    gradient_checkpointing: bool = False,
) -> PreTrainedModel:
    """Load `model` (path or hub id) or build one from `model_config` (a dict with `model_type`).

    A from-scratch config is completed from the tokenizer (`from_scratch_config`).
    """
    kwargs = load_kwargs(model, model_config, dtype, attn_implementation)
    if model is not None:
        require_local_path(model, "model")
        lm = AutoModelForCausalLM.from_pretrained(model, **kwargs)
    else:
        lm = AutoModelForCausalLM.from_config(from_scratch_config(model_config, tokenizer), **kwargs)
    return prepare_for_training(lm, tokenizer, gradient_checkpointing)


def load_kwargs(
    model: str | None, model_config: Mapping[str, Any] | None, dtype: str | None, attn_implementation: str | None
) -> dict[str, Any]:
    """Keyword arguments for `from_pretrained` / `from_config`; exactly one of `model` and `model_config`."""
    if (model is None) == (model_config is None):
        raise ValueError("give exactly one of `model` (a path or hub id) and `model_config` (a from-scratch config)")
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def prepare_for_training(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, gradient_checkpointing: bool
) -> PreTrainedModel:
    """Check the tokenizer fits the embedding, switch on gradient checkpointing, and set train mode
    (from_pretrained returns eval mode and Lightning keeps the modes it finds when fit starts)."""
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model's embedding has "
            f"{model.get_input_embeddings().num_embeddings}: they do not belong together"
        )
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model.train()
    return model


def check_same_vocabulary(tokenizer: PreTrainedTokenizerBase, reward_model: str) -> None:
    """The reward model reads the policy's token ids as they are: its tokenizer (if it saved one) must be
    the policy's."""
    try:
        other = load_tokenizer(reward_model)
    except (OSError, ValueError):
        log.warning("%s has no tokenizer; assuming it shares the policy's", reward_model)
        return
    if other.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"the reward model {reward_model} has a different tokenizer from the policy; PPO scores the "
                         "policy's tokens directly, so both must share one vocabulary")
