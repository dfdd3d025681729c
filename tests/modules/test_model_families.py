"""Every stage on the Hugging Face architectures a user brings, each built from config and loaded through
`from_pretrained` as a user's folder would be: Llama, Qwen2, Mistral (sliding-window attention), GPT-NeoX and
GPT-2 (absolute positions). The generator fits, is graded greedily and samples with both generation backends;
the reward model fits and scores; PPO makes a rollout and a step with that reward model.

Llama also runs with three subword tokenizers a user's model may bring (BPE trained here on the synthetic
benchmark's text): one without a pad token, one whose template adds a BOS, and one that merges the step
separator into the next word's token. Where their step labels land is checked in
tests/text/test_label_placement.py."""

import math
import string

import pytest
import torch
from lightning.pytorch import Trainer
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForTokenClassification, PreTrainedTokenizerFast

from e2h.data.synthetic import generate_problems
from e2h.datamodules import ProblemSource
from e2h.datamodules.reward_model import ScoreInput, StepSource
from e2h.generation.sampling import SamplingConfig, generate_completions
from e2h.modules import GeneratorModule, PPOModule, RewardModelModule
from e2h.modules.ppo_args import BatchSizes, Sampling
from e2h.text.tokenizer import build_char_tokenizer

SMALL = {"train": 20, "test": 4}
DECODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "max_position_embeddings": 256}
FAMILIES = {
    "llama": DECODER,
    "qwen2": {**DECODER, "num_key_value_heads": 2},
    "mistral": {**DECODER, "num_key_value_heads": 2, "sliding_window": 64},
    "gpt_neox": {**DECODER, "rotary_pct": 0.25},
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256},
}


def _bpe(pre_tokenizer, decoder, template_bos: bool, pad: bool) -> PreTrainedTokenizerFast:
    """A BPE tokenizer trained on the synthetic benchmark's prompts and solutions."""
    problems = generate_problems(40, seed=1)
    text = [f"# Question\n\n{p.problem}\n\n# Solution\n\n{p.solution}\n\n# Answer\n\n{p.answer}" for p in problems]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer, backend.decoder = pre_tokenizer, decoder
    # every printable ASCII character, as a real tokenizer has (transformers' stop strings probe with "abcdef")
    alphabet = pre_tokenizers.ByteLevel.alphabet() if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel) else list(
        string.printable)
    backend.train_from_iterator(text, trainers.BpeTrainer(vocab_size=200, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                                         initial_alphabet=alphabet, show_progress=False))
    if template_bos:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   **({"pad_token": "<pad>"} if pad else {}))


TOKENIZERS = {
    "char": build_char_tokenizer,
    "no_pad": lambda: _bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel(), False, False),
    "bos": lambda: _bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel(), True, True),
    # whitespace joins the word after it, so "\n\n" is never a token of its own
    "merged_separator": lambda: _bpe(pre_tokenizers.Split(Regex(r"\s*\S+"), behavior="isolated"), decoders.Fuse(),
                                     False, True),
}
CASES = [(name, "char") for name in sorted(FAMILIES)] + [("llama", t) for t in TOKENIZERS if t != "char"]


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{t}" for f, t in CASES])
def family(request, tmp_path_factory):
    """(name, generator folder, reward-model folder): random tiny models of the family with the tokenizer."""
    name, tokenizer_name = request.param
    tokenizer = TOKENIZERS[tokenizer_name]()
    config = AutoConfig.for_model(name, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  **FAMILIES[name])
    root = tmp_path_factory.mktemp(f"{name}-{tokenizer_name}")
    torch.manual_seed(0)
    for name, auto in (("gen", AutoModelForCausalLM), ("rm", AutoModelForTokenClassification)):
        config.num_labels = 1
        model = auto.from_config(config)
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return name, str(root / "gen"), str(root / "rm")


def _trainer(tmp_path, **kwargs):
    return Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                   enable_checkpointing=False, default_root_dir=tmp_path, **kwargs)


def test_the_generator_fits_is_graded_and_samples_with_both_backends(family, tmp_path, problems_data):
    name, gen, _ = family
    module = GeneratorModule(model=gen, max_new_tokens=12, budget_check="warn")
    dm = problems_data(tokenizer=None, val=ProblemSource(split="test", levels=[1, 4], limit=4, synthetic_per_level=SMALL))
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    metrics = {k: v for result in _trainer(tmp_path).validate(module, datamodule=dm) for k, v in result.items()}
    assert metrics["val/n_all"] == 4 and 0 <= metrics["val/acc_all"] <= 1
    prompts = ["# Question\n\n1+2\n\n# Solution\n\n"]
    for backend in ("generate", "static"):
        (greedy,) = generate_completions(module.model, module.tokenizer, prompts,
                                         SamplingConfig(max_new_tokens=8, backend=backend))
        # a random model may emit its pad token first, which ends the completion (0 tokens)
        assert 0 <= greedy[0].num_tokens <= 8, (name, backend)
    texts = {b: generate_completions(module.model, module.tokenizer, prompts, SamplingConfig(max_new_tokens=8, backend=b))
             for b in ("generate", "static")}
    assert texts["generate"][0][0].text == texts["static"][0][0].text  # the same greedy tokens


def test_the_reward_model_fits_and_scores(family, tmp_path, steps_data, write_jsonl):
    _, _, rm = family
    module = RewardModelModule(model=rm, supervision="both")
    dm = steps_data(tokenizer=None, train=[StepSource(split="train", levels=[1], limit=8, synthetic_per_level=SMALL)])
    _trainer(tmp_path, max_steps=2).fit(module, datamodule=dm)
    assert math.isfinite(float(module._last_loss))
    # scoring a sampled completion: one finite score per step, the solution's score their minimum
    completion = "1+2=3 3+4\n\n3+4=7\n\n# Answer\n\n7"
    line = {"problem_id": "p", "sample_index": 0, "level": 1, "prompt": "# Question\n\n1+2+4\n\n# Solution\n\n",
            "completion": completion, "answer": "7", "gold": "7", "correct": True}
    samples = write_jsonl(tmp_path / "samples.jsonl", [line])
    scoring = steps_data(tokenizer=None, train=[], predict=ScoreInput(path=str(samples)))
    ((row,),) = _trainer(tmp_path).predict(module, datamodule=scoring)
    assert len(row["step_scores"]) == 2 and all(0 < s < 1 for s in row["step_scores"])
    assert row["score"] == pytest.approx(min(row["step_scores"]))


def test_ppo_makes_a_rollout_and_a_step(family, tmp_path, ppo_data):
    _, gen, rm = family
    module = PPOModule(policy=gen, reward_model=rm, batch=BatchSizes(rollout=4, minibatch=4),
                       sampling=Sampling(max_new_tokens=8, temperature=1.0, top_k=0, budget_check="warn"),
                       log_rollouts=0, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-4))
    dm = ppo_data(tokenizer=None, val=None)
    _trainer(tmp_path, max_steps=1, limit_val_batches=0, use_distributed_sampler=False).fit(module, datamodule=dm)
    assert module.rollouts_made == 1
