"""The static-cache decoding backend (`e2h.generation.static_cache.static_generate`) against `model.generate`: the
same greedy tokens (EOS, padding, early stop included), the same sampling distribution, the same completions
through `generate_completions`, and a compiled decode step that is compiled once."""

import copy
import math
from dataclasses import replace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from e2h.generation.sampling import SamplingConfig, generate_completions
from e2h.generation.static_cache import release, static_generate

PAD = 0
MAX_NEW = 10


def llama(tiny_llama, seed: int = 0) -> LlamaForCausalLM:
    """The tiny model with grouped-query attention (2 key-value heads), in eval mode."""
    return tiny_llama.build(seed=seed, num_key_value_heads=2, max_position_embeddings=256).eval()


def left_padded(lengths: list[int], vocab: int = 100, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, width - n :] = torch.randint(3, vocab, (n,), generator=g)
        mask[row, width - n :] = 1
    return ids, mask


@pytest.fixture(scope="module")
def model(tiny_llama) -> LlamaForCausalLM:
    return llama(tiny_llama)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def decoder(request, model):
    """Llama (rotary positions: a constant shift of a row's positions changes nothing) and GPT-2 (learned
    absolute positions: left-padded rows are only right with the padding-aware position ids)."""
    if request.param == "llama":
        return model
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=4, n_positions=256, pad_token_id=PAD,
                        bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def greedy_pair(model, ids, mask, eos):
    kwargs = dict(max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=PAD)
    expected = model.generate(ids, attention_mask=mask, do_sample=False, **kwargs)
    return expected, static_generate(model, ids, mask, do_sample=False, **kwargs)


def first_hit(row: list[int], eos: set[int]) -> int:
    return next((i for i, t in enumerate(row) if t in eos), len(row))


def test_greedy_tokens_equal_generate_on_a_left_padded_batch_with_eos(decoder):
    model = decoder
    ids, mask = left_padded([3, 7, 9, 5])
    width = ids.shape[1]
    expected, ours = greedy_pair(model, ids, mask, eos=None)
    assert torch.equal(ours, expected) and ours.shape[1] == width + MAX_NEW
    free = expected[:, width:].tolist()

    # An EOS the model really emits, early in some rows and later or never in others.
    def finish_steps(t):
        return [first_hit(r, {t}) for r in free]

    eos = next(t for t in sorted({t for r in free for t in r}) if min(finish_steps(t)) < MAX_NEW - 2
               and len(set(finish_steps(t))) > 1)
    expected, ours = greedy_pair(model, ids, mask, eos=eos)
    assert torch.equal(ours, expected)
    new = expected[:, width:]
    assert (new == PAD).any(), "some row finished and was padded"

    # Several EOS ids, one of which every row emits by its third token: the batch stops early (both sides).
    eos_ids = sorted({r[2] for r in free})
    expected, ours = greedy_pair(model, ids, mask, eos=eos_ids)
    assert torch.equal(ours, expected)
    assert ours.shape[1] < width + MAX_NEW
    assert ours.shape[1] == width + max(first_hit(r, set(eos_ids)) + 1 for r in free)


def chi_square_critical(dof: int, z: float = 3.719) -> float:
    """Upper quantile of chi-square(dof) at p = 1e-4 (z = its normal quantile), Wilson-Hilferty approximation
    (accurate to ~1% for dof >= 3)."""
    return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson statistic over the support of `probs` and its degrees of freedom; tokens outside the support
    must never be drawn."""
    support = probs > 0
    assert counts[~support].sum() == 0, "a token removed by top-k/top-p was sampled"
    n = counts.sum()
    expected = n * probs[support]
    return float(((counts[support] - expected) ** 2 / expected).sum()), int(support.sum()) - 1


def test_sampling_follows_temperature_top_k_top_p_like_generate(tiny_llama):
    # Logits scaled up (std ~1.6 instead of ~0.16) so temperature, top-k and top-p all change the distribution.
    model = llama(tiny_llama, seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(10)
    temperature, top_k, top_p, n = 0.7, 12, 0.9, 4000
    warpers = [TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k), TopPLogitsWarper(top_p)]

    def reference(prefix: list[int], *, warp=warpers) -> torch.Tensor:
        logits = model(torch.tensor([prefix])).logits[:, -1, :].float()
        for w in warp:
            logits = w(None, logits)
        return logits.softmax(-1)[0]

    ids, mask = left_padded([4, 8], seed=5)
    torch.manual_seed(0)
    out = static_generate(model, ids, mask, max_new_tokens=2, do_sample=True, temperature=temperature, top_k=top_k,
                          top_p=top_p, pad_token_id=PAD, num_return_sequences=n)
    assert out.shape == (2 * n, ids.shape[1] + 2)
    with torch.no_grad():
        for row in range(2):  # rows row*n ... row*n+n-1 belong to prompt `row`, as in generate
            prompt = ids[row][mask[row].bool()].tolist()
            drawn = out[row * n : (row + 1) * n, ids.shape[1] :]
            # First token (sampled from the prefill's logits).
            probs = reference(prompt)
            counts = torch.bincount(drawn[:, 0], minlength=probs.numel()).float()
            stat, dof = chi_square(counts, probs)
            assert dof >= 3 and stat < chi_square_critical(dof), (row, stat, dof)
            # The test has power: temperature 1 (no warper but top-k) is rejected by a wide margin.
            wrong = reference(prompt, warp=[TopKLogitsWarper(top_k)])
            assert ((counts - counts.sum() * wrong) ** 2 / (counts.sum() * wrong).clamp_min(1e-9)).sum() > 10 * stat
            # Second token after the most frequent first token (sampled from a decode step's logits).
            first = int(counts.argmax())
            second = drawn[drawn[:, 0] == first, 1]
            probs = reference(prompt + [first])
            stat, dof = chi_square(torch.bincount(second, minlength=probs.numel()).float(), probs)
            assert dof >= 3 and stat < chi_square_critical(dof), (row, stat, dof)


def test_generate_completions_static_backend_gives_generates_completions(tiny_llama, char_tok):
    tokenizer = char_tok
    model = llama(tiny_llama, seed=7)
    prompts = ["# Question\n\n1+2\n\n# Solution\n\n", "3*4-5", "# Question\n\nWhat is 17 mod 5?\n\n# Solution\n\n"]
    greedy = SamplingConfig(max_new_tokens=16)
    plain = generate_completions(model, tokenizer, prompts, greedy)
    # A stop string the model writes in the middle of a completion.
    stop = next(c.text[4] for [c] in plain if len(c.text) > 8 and not c.text[4].isspace())
    for sampling in (greedy, SamplingConfig(max_new_tokens=16, stop=(stop,))):
        expected = generate_completions(model, tokenizer, prompts, sampling)
        ours = generate_completions(model, tokenizer, prompts, replace(sampling, backend="static"))
        assert ours == expected
    assert any(len(c.text) < len(p.text) for [c], [p] in zip(ours, plain)), "the stop string cut a completion"

    sampled = SamplingConfig(max_new_tokens=8, temperature=0.8, top_k=20, backend="static")
    torch.manual_seed(0)
    first = generate_completions(model, tokenizer, prompts, sampled, num_samples=3)
    torch.manual_seed(0)
    assert generate_completions(model, tokenizer, prompts, sampled, num_samples=3) == first
    assert [len(c) for c in first] == [3, 3, 3]


def test_a_bad_backend_name_is_refused():
    with pytest.raises(ValueError, match="backend"):
        SamplingConfig(backend="vllm")


def test_compiled_step_compiles_once_and_reads_weights_updated_in_place(model):
    # A counting backend traces the step with dynamo (fullgraph: no graph break) and runs it eagerly, so this
    # checks the compile path in seconds on a CPU; on a GPU the default backend adds CUDA graphs.
    model = copy.deepcopy(model)
    compiled = []

    def counting_backend(gm, example_inputs):
        compiled.append(gm)
        return gm.forward

    ids, mask = left_padded([3, 7, 9, 5])
    kwargs = dict(max_new_tokens=MAX_NEW, eos_token_id=None, pad_token_id=PAD)
    run = lambda: static_generate(model, ids, mask, compile=True, fullgraph=True,  # noqa: E731
                                  compile_backend=counting_backend, **kwargs)
    expected = model.generate(ids, attention_mask=mask, do_sample=False, **kwargs)
    assert torch.equal(run(), expected)
    assert len(compiled) == 1
    assert torch.equal(run(), expected)
    assert len(compiled) == 1, "a second call compiled again"
    with torch.no_grad():  # what an optimizer step does: same tensors, new values
        for p in model.parameters():
            p.mul_(1.5)
    updated = model.generate(ids, attention_mask=mask, do_sample=False, **kwargs)
    assert not torch.equal(updated, expected)
    assert torch.equal(run(), updated)
    assert len(compiled) == 1, "an in-place weight update caused a recompile"
    release(model)


def test_models_without_a_decoder_cache_are_refused(model):
    class NoCache(torch.nn.Module):
        config = model.config

        def forward(self, input_ids, attention_mask=None):
            return None

    with pytest.raises(NotImplementedError, match="model.generate"):
        static_generate(NoCache(), torch.ones(1, 2, dtype=torch.long), max_new_tokens=2)
