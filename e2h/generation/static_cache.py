"""A fast decoding loop for sampling and PPO rollouts: prefill once, then one token per step on a `StaticCache`.

Why it exists: `model.generate` with its default dynamic cache spends most of each decode step in Python and
kernel launches (about 4.5k new tok/s on an H200 for a 1B Llama shape at batch 64, some 20x below the
memory-bandwidth limit; docs/benchmarks.md). A plain loop over a preallocated `transformers.StaticCache` has
fixed shapes, so its decode step can be compiled with `torch.compile(mode="reduce-overhead")` (CUDA graphs:
one launch per step); a prototype of such a loop, outside e2h, reached 24k-46k new tok/s on that GPU.

`static_generate` returns what `model.generate(...)` returns for the same arguments: the left-padded prompt
followed by the new tokens, each row filled with `pad_token_id` after its EOS, and the batch stops early once
every row has finished. Greedy tokens equal `generate`'s; sampled tokens follow the same distribution
(temperature, then top-k, then top-p, as `generate`'s logits processors), not the same random stream.

Limits:
- decoder-only models whose forward takes a `cache` (or `past_key_values`) that `StaticCache` can be built for
  (Llama, Qwen, Mistral, Gemma...); others raise `NotImplementedError` (use `model.generate`);
- only the sampling options above: no repetition penalty, min_new_tokens, stop strings (the caller cuts text
  at stop strings afterwards), beams, and nothing is read from `model.generation_config`;
- `compile=True` specialises on shapes: each (batch, cache length) gets its own CUDA graph; the cache length is
  rounded up to a multiple of `CACHE_LEN_MULTIPLE` so prompts of similar lengths share one. The compiled step
  and its cache are kept per model between calls (`release(model)` frees them); weights updated in place by an
  optimizer step are read by the next call without recompiling, but parameters re-allocated at new addresses
  (e.g. FSDP/ZeRO-3 gathering full parameters for each rollout) make CUDA graphs re-record.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel, StaticCache

CACHE_LEN_MULTIPLE = 64  # compiled decoding: cache lengths rounded up so similar prompt widths share a graph
CHECK_EVERY = 8  # decode steps between host syncs that test whether every row has finished


@dataclass
class _State:
    """What a model keeps between compiled calls: the compiled step per options and the last StaticCache."""

    steps: dict = field(default_factory=dict)
    cache: StaticCache | None = None
    cache_key: tuple | None = None


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def release(model: PreTrainedModel) -> None:
    """Drop the compiled step and the KV cache kept for `model` (e.g. to free memory before training)."""
    _STATES.pop(model, None)


def left_padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows, as `transformers` generation computes them: real tokens count from 0,
    padding gets 0."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def _cache_kwarg(model: PreTrainedModel) -> str:
    """The forward argument that takes the cache: `cache` in transformers 5.2x, `past_key_values` before."""
    if getattr(model.config, "is_encoder_decoder", False):
        raise NotImplementedError(f"static_generate supports decoder-only models, not {type(model).__name__}")
    params = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise NotImplementedError(f"{type(model).__name__}.forward takes no KV cache; use model.generate")


def _new_cache(model: PreTrainedModel, max_cache_len: int) -> StaticCache:
    try:
        return StaticCache(config=model.config, max_cache_len=max_cache_len)
    except Exception as e:  # a layer type without a static counterpart, an unusual config...
        raise NotImplementedError(f"no StaticCache for {type(model).__name__}: {e}; use model.generate") from e


def _decode_step(model, cache_kwarg: str, cache, token, position_ids, attention_mask) -> torch.Tensor:
    """One token per row: logits (float32) of the next token. This is the function that gets compiled."""
    out = model(input_ids=token, position_ids=position_ids, attention_mask=attention_mask, use_cache=True,
                **{cache_kwarg: cache})
    return out.logits[:, -1, :].float()


def _compiled_step(model: PreTrainedModel, fullgraph: bool, backend: str | Callable) -> Callable:
    # Kept per model so a second call does not compile again. Dynamo guards on the model object and on
    # shapes, not on parameter values: PPO's in-place optimizer steps change the weights the step (and its
    # CUDA graph, which reads the parameters at their fixed addresses) uses without a recompile.
    state = _STATES.setdefault(model, _State())
    key = (fullgraph, backend)
    if key not in state.steps:
        options = {"mode": "reduce-overhead"} if backend == "inductor" else {}
        state.steps[key] = torch.compile(_decode_step, fullgraph=fullgraph, backend=backend, **options)
    return state.steps[key]


def _kept_cache(model: PreTrainedModel, key: tuple, max_cache_len: int) -> StaticCache:
    """The model's last cache, zeroed, when it fits (fixed addresses: CUDA graphs replay without re-recording);
    otherwise a new one replacing it."""
    state = _STATES.setdefault(model, _State())
    if state.cache_key == key:
        state.cache.reset()
    else:
        state.cache = None  # free the old one first
        state.cache, state.cache_key = _new_cache(model, max_cache_len), key
    return state.cache


def process_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0
) -> torch.Tensor:
    """Temperature, then top-k, then top-p, as `generate`'s logits processors (removed tokens get -inf)."""
    if temperature != 1.0:
        logits = logits / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=False)
        remove = sorted_logits.softmax(-1).cumsum(-1) <= 1 - top_p
        remove[..., -1:] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def _next_token(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None, top_p: float):
    if not do_sample:
        return logits.argmax(-1)
    probs = process_logits(logits, temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


@torch.no_grad()
def static_generate(
    model: PreTrainedModel,
    input_ids: torch.LongTensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    num_return_sequences: int = 1,
    compile: bool = False,
    fullgraph: bool = False,
    compile_backend: str | Callable = "inductor",
) -> torch.LongTensor:
    """Prompt + new tokens, as `model.generate(input_ids, attention_mask=..., <same arguments>)` returns them.

    Prompts are left-padded (`attention_mask` 0 on the padding). `top_k` None or 0 and `top_p` 1 switch those
    filters off. `num_return_sequences` repeats each prompt in place (rows i*n ... i*n+n-1 belong to prompt i).
    `compile` compiles the decode step (`compile_backend` "inductor" uses mode="reduce-overhead": CUDA graphs
    on GPU; another backend, e.g. "eager", checks the tracing without code generation).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and not temperature > 0:
        raise ValueError(f"sampling needs temperature > 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    cache_kwarg = _cache_kwarg(model)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
    eos = None
    if eos_token_id is not None:
        eos_list = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
        eos = torch.tensor(eos_list, device=input_ids.device)
        pad_token_id = eos_list[0] if pad_token_id is None else pad_token_id  # as generate does
    batch, prompt_len = input_ids.shape
    cache_len = prompt_len + max_new_tokens
    if compile:
        cache_len = -(-cache_len // CACHE_LEN_MULTIPLE) * CACHE_LEN_MULTIPLE
        step = _compiled_step(model, fullgraph, compile_backend)
        cache = _kept_cache(model, (batch, cache_len, model.dtype, input_ids.device), cache_len)
    else:
        step = _decode_step
        cache = _new_cache(model, cache_len)

    # Positions count real tokens only (left padding); padded positions are masked anyway (0 as generate).
    position_ids = left_padded_positions(attention_mask)
    # One mask for the whole cache: positions not yet written are hidden by the causal mask, so the decode
    # step always sees the same shape.
    mask = torch.cat([attention_mask, attention_mask.new_ones(batch, cache_len - prompt_len)], dim=1)
    prefill_kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                   **{cache_kwarg: cache}, **prefill_kwargs).logits[:, -1, :].float()
    position = position_ids[:, -1:] + 1

    unfinished = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
    new_tokens = []
    for i in range(max_new_tokens):
        token = _next_token(logits, do_sample, temperature, top_k, top_p)
        if eos is not None:
            token = torch.where(unfinished, token, pad_token_id)
            unfinished &= ~torch.isin(token, eos)
        new_tokens.append(token)
        if i == max_new_tokens - 1 or (eos is not None and (i + 1) % CHECK_EVERY == 0 and not unfinished.any()):
            break
        if compile and compile_backend == "inductor":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's outputs are consumed
        logits = step(model, cache_kwarg, cache, token[:, None], position, mask)
        position = position + 1

    new = torch.stack(new_tokens, dim=1)
    if eos is not None:  # as generate: stop after the step at which the last row finished
        hit = torch.isin(new, eos)
        ends = torch.where(hit.any(1), hit.int().argmax(1) + 1, new.shape[1])
        new = new[:, : int(ends.max())]
    return torch.cat([input_ids, new], dim=1)
