"""Shared test setup: no hub access, the real data beside the checkout, the one tiny model, and the shipped
experiment configs.

The tests mirror the package (tests/data/ tests e2h/data/, ...). Tests that take minutes are marked
``slow``: ``pytest -m "not slow"`` leaves them out while iterating; plain ``pytest`` runs everything.
"""

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from transformers import LlamaConfig, LlamaForCausalLM

from e2h.datamodules import PPOPromptsDataModule, ProblemsDataModule, ProblemSource, StepsDataModule
from e2h.text.tokenizer import build_char_tokenizer

# Nothing may reach a model or dataset hub at test time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("E2H_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_file():
    """``shared_file("math/test.jsonl")``: a file of the real data, or a skip that names the missing file."""

    def find(relative: str) -> Path:
        path = SHARED_DATA / relative
        if not path.is_file():
            pytest.skip(f"real data file {path} is absent (set E2H_SHARED_DATA to the data folder)")
        return path

    return find


@pytest.fixture(scope="session")
def write_jsonl():
    """``write_jsonl(path, rows)``: the rows as a JSONL file, one object a line; returns the path."""

    def write(path: Path, rows) -> Path:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def sample_line():
    """``sample_line(problem_id, level, index, answer, gold)``: one line of a samples JSONL (`e2h predict`)."""

    def line(pid: str, level: int | None, index: int, answer: str | None, gold: str | None) -> dict:
        return {"problem_id": pid, "level": level, "sample_index": index, "prompt": "p", "completion": "c",
                "answer": answer, "gold": gold, "correct": None, "num_tokens": 3}

    return line


# --- small data modules: the synthetic benchmark cut down -----------------------------------------------------


@pytest.fixture(scope="session")
def problems_data():
    """``problems_data(**kwargs)``: the generator's data module on 100 train / 10 test problems a level (train
    levels 1-2, validation 1-5), char-tokenised, small batches."""
    sizes = {"train": 100, "test": 10}

    def make(**kwargs) -> ProblemsDataModule:
        defaults = dict(
            train=ProblemSource(split="train", levels=[1, 2], synthetic_per_level=sizes),
            val=ProblemSource(split="test", levels=[1, 2, 3, 4, 5], synthetic_per_level=sizes),
            max_length=96, batch_size=8, eval_batch_size=25, tokenizer="char",
        )
        return ProblemsDataModule(**{**defaults, **kwargs})

    return make


@pytest.fixture(scope="session")
def steps_data():
    """``steps_data(**kwargs)``: the reward model's data module, char-tokenised, no validation by default."""

    def make(**kwargs) -> StepsDataModule:
        return StepsDataModule(**{**dict(val=[], max_length=256, batch_size=8, eval_batch_size=16, tokenizer="char"),
                                  **kwargs})

    return make


@pytest.fixture(scope="session")
def ppo_data():
    """``ppo_data(**kwargs)``: PPO's prompts on 20 train / 4 test problems a level, levels 4-5 hidden in training."""
    sizes = {"train": 20, "test": 4}

    def make(**kwargs) -> PPOPromptsDataModule:
        defaults = dict(
            train=ProblemSource(levels=[1, 2, 3, 4, 5], synthetic_per_level=sizes),
            val=ProblemSource(split="test", levels=[1, 4], synthetic_per_level=sizes),
            hide_answers_for_levels=[4, 5], eval_batch_size=8,
        )
        return PPOPromptsDataModule(**{**defaults, **kwargs})

    return make


# --- the tiny model -----------------------------------------------------------------------------------------


class TinyLlama:
    """The tests' one model: a 2-layer Llama of width 64 over the character tokenizer's vocabulary, random.

    As a from-scratch ``model_config`` (what e2h's modules take), as a Hugging Face model, or saved with the
    tokenizer as the folder a user would point to. A test states only what it needs to differ.
    """

    SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}

    def config(self, **overrides) -> dict:
        """A from-scratch ``model_config`` for `GeneratorModule` / `RewardModelModule`."""
        return {"model_type": "llama", **self.SIZES, **overrides}

    def hf_config(self, **overrides) -> LlamaConfig:
        tokenizer = build_char_tokenizer()
        ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
               "eos_token_id": tokenizer.eos_token_id}
        return LlamaConfig(vocab_size=len(tokenizer), **{**ids, **self.SIZES, **overrides})

    def build(self, head=LlamaForCausalLM, seed: int = 0, **overrides):
        """The model with `head`, its weights drawn from `seed`."""
        torch.manual_seed(seed)
        return head(self.hf_config(**overrides))

    def save(self, model, folder: Path) -> str:
        """`model` and the char tokenizer as a Hugging Face folder."""
        model.save_pretrained(folder)
        build_char_tokenizer().save_pretrained(folder)
        return str(folder)


@pytest.fixture(scope="session")
def char_tok():
    """The character tokenizer (one token per character: positions can be counted by hand)."""
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama() -> TinyLlama:
    return TinyLlama()


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_llama, tmp_path_factory) -> str:
    """A random tiny causal LM and the char tokenizer saved as a Hugging Face folder (what a user points to)."""
    return tiny_llama.save(tiny_llama.build(max_position_embeddings=1024), tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared machine idle-spinning threads can slow
    every op many times over; restored afterwards so other test modules keep their setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the shipped configs ------------------------------------------------------------------------------------

MODEL_PATH_KEYS = {"model", "tokenizer", "policy", "reference", "value_model", "reward_model"}


def experiment_configs() -> list[Path]:
    # strategy files are not experiments: they compose onto one (tested with the strategy configs)
    return sorted(p for p in (REPO / "configs").rglob("*.yaml") if "strategy" not in p.relative_to(REPO).parts)


def config_chain(config: Path) -> list[Path]:
    """The config and the bases it composes on, base first (a delta names its base in a first-line comment:
    ``# composes on: FILE``)."""
    first = config.read_text().splitlines()[0]
    if first.startswith("# composes on:"):
        return config_chain(REPO / first.split(":", 1)[1].strip()) + [config]
    return [config]


def placeholder_overrides(chain: list[Path], model_dir: str) -> list[str]:
    """Point the model paths a user supplies (placeholders in the configs) at `model_dir`."""
    merged: dict = {}
    for path in chain:
        merged.update((yaml.safe_load(path.read_text()).get("model") or {}).get("init_args") or {})
    return [
        arg
        for key, value in merged.items()
        if key in MODEL_PATH_KEYS and isinstance(value, str) and value != "char" and not (REPO / value).exists()
        for arg in (f"--model.init_args.{key}", model_dir)
    ]


def pytest_generate_tests(metafunc):
    # A test taking `experiment_config` runs once per shipped experiment config.
    if "experiment_config" in metafunc.fixturenames:
        configs = experiment_configs()
        metafunc.parametrize("experiment_config", configs, ids=[str(p.relative_to(REPO / "configs")) for p in configs])


@pytest.fixture
def config_args(tiny_model_dir):
    """``config_args(config)``: the command-line arguments that load a shipped config with the bases it
    composes on, its placeholders pointed at the tiny model."""

    def args(config: Path) -> list[str]:
        chain = config_chain(config)
        return [a for path in chain for a in ("--config", str(path))] + placeholder_overrides(chain, tiny_model_dir)

    return args
