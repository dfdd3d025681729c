"""Lightning strategies that know where a Hugging Face model's layers are, and reading whole weights under them.

`DecoderLayerFSDP` wraps each decoder layer as an FSDP unit, and each whole Hugging Face model (the policy,
the reference, the value and reward models of PPO) as a unit of its own, found from the models themselves
(`_no_split_modules`, which transformers declares for every architecture), so one config serves Llama,
Qwen, Mistral... without naming a class. Activation checkpointing is applied to the same layers.

`DeepSpeedZeRO` is Lightning's DeepSpeed strategy plus the one thing ZeRO-3 needs for `from_pretrained`:
Lightning builds the model (our `configure_model`) inside `deepspeed.zero.Init`, where a plain
`from_pretrained` loads its weights into already-partitioned (empty) parameters (Lightning #19259).
transformers loads correctly under ZeRO-3 when an `HfDeepSpeedConfig` is alive, so the strategy keeps one.

`gathered_parameters(model)` gives generation the weights it reads outside the wrapper's forward (once per
rollout, not per token); `full_state_dict` gathers FSDP weights for export.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from transformers import PreTrainedModel


def top_level_models(module: torch.nn.Module) -> list[PreTrainedModel]:
    """The outermost Hugging Face models inside `module` (not their inner `LlamaModel` etc.)."""
    if isinstance(module, PreTrainedModel):
        return [module]
    return [m for child in module.children() for m in top_level_models(child)]


def decoder_layer_classes(module: torch.nn.Module) -> set[type[torch.nn.Module]]:
    """The classes of the decoder layers in `module`, named by each model's `_no_split_modules`."""
    names = {name for model in top_level_models(module) for name in (model._no_split_modules or [])}
    classes = {type(m) for m in module.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(
            "found no decoder layers to wrap: the module holds no Hugging Face model that declares "
            "`_no_split_modules`; use lightning's FSDPStrategy with an explicit auto_wrap_policy instead"
        )
    return classes


class DecoderLayerFSDP(FSDPStrategy):
    """FSDP wrapping each decoder layer and each whole Hugging Face model; see the module docstring.

    Args:
        activation_checkpointing_layers: recompute each decoder layer's activations in backward (saves
            memory for ~1/3 more compute).
        sharding_strategy: FULL_SHARD (ZeRO-3 like), SHARD_GRAD_OP (ZeRO-2 like), NO_SHARD, HYBRID_SHARD.
        state_dict_type: "sharded" writes a checkpoint folder with one file per rank (fast, no gather on one
            rank; resume with the same number of ranks); "full" gathers one file on rank 0.
        cpu_offload: keep parameters and gradients on the CPU between uses.
        limit_all_gathers: cap in-flight all-gathers (bounds memory spikes).
    """

    def __init__(
        self,
        activation_checkpointing_layers: bool = True,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"] = "FULL_SHARD",
        state_dict_type: Literal["full", "sharded"] = "sharded",
        cpu_offload: bool = False,
        limit_all_gathers: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
            cpu_offload=cpu_offload,
            limit_all_gathers=limit_all_gathers,
            **kwargs,
        )
        self.activation_checkpointing_layers = activation_checkpointing_layers

    def _setup_model(self, model: torch.nn.Module) -> torch.nn.Module:
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        layers = decoder_layer_classes(model)
        wholes = {type(m) for m in top_level_models(model)}
        # Decided here, from the model Lightning hands over (built by configure_model), not in the config.
        self.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(layers | wholes)
        if self.activation_checkpointing_layers:
            classes = tuple(layers)
            self._activation_checkpointing_kwargs = {"check_fn": lambda m: isinstance(m, classes)}
        return super()._setup_model(model)


class DeepSpeedZeRO(DeepSpeedStrategy):
    """Lightning's DeepSpeedStrategy; under stage 3, Hugging Face models load their weights correctly.

    Every DeepSpeedStrategy argument applies (`stage`, `offload_optimizer`, `offload_parameters`, ...).
    """

    @contextmanager
    def model_sharded_context(self) -> Iterator[None]:
        if self.zero_stage_3:
            from transformers.integrations import HfDeepSpeedConfig

            # transformers holds only a weak reference: keep it alive while the strategy lives.
            self._hf_deepspeed_config = HfDeepSpeedConfig(self.config)
        with super().model_sharded_context():
            yield


def _strategy_root(pl_module: Any) -> torch.nn.Module | None:
    trainer = getattr(pl_module, "_trainer", None)
    return trainer.strategy.model if trainer is not None else None


@contextmanager
def gathered_parameters(model: torch.nn.Module) -> Iterator[None]:
    """Whole weights for generation, which calls the Hugging Face model's own forward and so bypasses the
    sharding wrapper's; read-only (not for training). A collective: every rank must enter it.

    - DeepSpeed ZeRO-3: all of `model`'s weights are gathered once for the block (not once per layer per
      generated token).
    - FSDP (`DecoderLayerFSDP`, where `model` is a unit of its own): the unit's own weights (embeddings,
      final norm, LM head) are gathered for the block; each decoder layer still gathers in its own forward,
      one all-gather per layer per token, so ranks are kept in step (`generation_kwargs`). Untested on GPUs
      here: no GPU was available when it was written (see docs/benchmarks.md).
    - otherwise nothing to do.
    """
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    ds_params = [p for p in model.parameters() if hasattr(p, "ds_id")]
    if ds_params:
        import deepspeed

        with deepspeed.zero.GatheredParameters(ds_params, modifier_rank=None):
            yield
    elif isinstance(model, FSDP):
        with FSDP.summon_full_params(model, recurse=False, writeback=False):
            yield
    else:
        yield


def generation_kwargs(pl_module: Any) -> dict[str, Any]:
    """Extra `generate` arguments for the strategy: under FSDP with several ranks, `synced_gpus` keeps every
    rank calling forward until all have finished (each forward is a collective; a rank that stopped early
    would leave the others waiting forever)."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    sharded = isinstance(_strategy_root(pl_module), FSDP)
    return {"synced_gpus": True} if sharded and torch.distributed.get_world_size() > 1 else {}


def full_state_dict(pl_module: Any, attr: str) -> dict[str, torch.Tensor] | None:
    """Under FSDP, the whole state dict of `pl_module.<attr>` on global rank 0 ({} on the others), keys
    relative to that model; None when the module is not sharded by FSDP. A collective under FSDP."""
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    root = _strategy_root(pl_module)
    if not isinstance(root, FSDP):
        return None
    with FSDP.state_dict_type(root, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
        state = root.state_dict()
    prefix = f"{attr}."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside an FSDP wrapper (itself when not wrapped)."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    return model.module if isinstance(model, FSDP) else model
