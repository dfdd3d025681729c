"""Sampling completions from a causal LM with `transformers` generation.

Prompts are left-padded in one batch; each prompt yields `num_samples` completions, cut at EOS and at the
first stop string (a prompt-only generator would otherwise write the next few-shot exemplar).

Two backends: `generate` (`model.generate`, the default) and `static`
(`e2h.generation.static_cache.static_generate`, a StaticCache loop whose decode step is compiled with CUDA graphs
on a GPU). The static backend does not stop a
row at a stop string (only at EOS or `max_new_tokens`); the text is cut at the stop string afterwards, so the
completions are the same, at the cost of the tokens generated past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from e2h.generation.static_cache import static_generate

BACKENDS = ("generate", "static")


@dataclass(frozen=True)
class SamplingConfig:
    """How to decode. temperature 0 means greedy.

    backend: "generate" (`model.generate`) or "static" (`e2h.generation.static_cache.static_generate`: same
    greedy tokens, same sampling distribution; its decode step is compiled when the model is on a CUDA device,
    so the first call pays compilation).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    backend: str = "generate"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {self.backend!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int  # generated tokens up to and including EOS / the stop string
    # Cut by the token budget: no EOS and no stop string within max_new_tokens, so the text may end mid-solution.
    clipped: bool = False


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@torch.no_grad()
def generate_tokens(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    num_samples: int = 1,
    generate_kwargs: dict | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The prompts, left-padded in one batch (``input_ids``, ``attention_mask``), and ``[B x num_samples, T]``
    new tokens after them (rows i*n ... i*n+n-1 belong to prompt i), from the backend `sampling` names.

    `generate_kwargs` go to `model.generate` (e.g. `synced_gpus` under FSDP,
    `e2h.training.strategies.generation_kwargs`); given any, the `generate` backend is used (the static loop has
    no way to keep sharded ranks in step).
    """
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left")
    enc = {k: v.to(model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
    kwargs: dict = {
        "max_new_tokens": sampling.max_new_tokens,
        "num_return_sequences": num_samples,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "use_cache": True,
    }
    if sampling.greedy:
        if num_samples > 1:
            raise ValueError("greedy decoding (temperature 0) gives one completion; set temperature > 0 for N samples")
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k or None)
    if sampling.backend == "static" and not generate_kwargs:  # stop strings cut the text only, in _to_completion
        kwargs.pop("use_cache")  # always on there
        out = static_generate(model, enc["input_ids"], enc["attention_mask"], compile=model.device.type == "cuda",
                              **kwargs)
    else:
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
        out = model.generate(**enc, **kwargs, **(generate_kwargs or {}))
    return enc, out[:, enc["input_ids"].shape[1] :]


def generate_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    sampling: SamplingConfig,
    num_samples: int = 1,
    generate_kwargs: dict | None = None,
) -> list[list[Completion]]:
    """`num_samples` completions for each prompt (outer list follows `prompts`), cut at EOS and at the first
    stop string (see `generate_tokens`)."""
    if not prompts:
        return []
    _, new = generate_tokens(model, tokenizer, prompts, sampling, num_samples, generate_kwargs)
    new_tokens = new.tolist()
    completions = [_to_completion(ids, tokenizer, sampling.stop) for ids in new_tokens]
    return [completions[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


def _to_completion(ids: list[int], tokenizer: PreTrainedTokenizerBase, stop: Sequence[str]) -> Completion:
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    n = len(ids)
    ended = True
    if eos in ids:
        n = ids.index(eos) + 1
    elif pad is not None and pad != eos and pad in ids:
        n = ids.index(pad)
    else:  # the row ran to the budget (every row of the batch is max_new_tokens long then)
        ended = False
    text = tokenizer.decode(ids[:n], skip_special_tokens=True)
    text, stopped = cut_at_stop(text, stop)
    if stopped:  # count only the tokens that produced the kept text plus the stop string
        n = min(n, len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1)
    return Completion(text=text, num_tokens=n, clipped=not (ended or stopped))
