"""Every shipped YAML under configs/ (every subfolder) parses and instantiates its trainer, model and data.

Paths a user supplies (a base model, a generator export, a reward model) are placeholders in the configs;
the test points them at a tiny model saved with `save_pretrained`, the same way a user's model loads.
Configs that are deltas name the base they compose on in a first-line comment: `# composes on: FILE`.
"""

from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule
from transformers import LlamaConfig, LlamaForCausalLM

from e2h.cli.main import build_cli
from e2h.text.tokenizer import build_char_tokenizer

REPO = Path(__file__).resolve().parents[1]
MODEL_PATH_KEYS = {"model", "tokenizer", "policy", "reference", "value_model", "reward_model"}


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def experiment_configs() -> list[Path]:
    # strategy files are not experiments: they compose onto one (tested with the strategy configs)
    return sorted(p for p in (REPO / "configs").rglob("*.yaml") if "strategy" not in p.relative_to(REPO).parts)


def config_chain(config: Path) -> list[Path]:
    """The config and the bases it composes on, base first."""
    first = config.read_text().splitlines()[0]
    if first.startswith("# composes on:"):
        return config_chain(REPO / first.split(":", 1)[1].strip()) + [config]
    return [config]


def placeholder_overrides(chain: list[Path], model_dir: str) -> list[str]:
    merged: dict = {}
    for path in chain:
        merged.update((yaml.safe_load(path.read_text()).get("model") or {}).get("init_args") or {})
    return [
        arg
        for key, value in merged.items()
        if key in MODEL_PATH_KEYS and isinstance(value, str) and value != "char" and not (REPO / value).exists()
        for arg in (f"--model.init_args.{key}", model_dir)
    ]


@pytest.mark.parametrize("config", experiment_configs(), ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_instantiates(config, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    chain = config_chain(config)
    args = [a for path in chain for a in ("--config", str(path))] + placeholder_overrides(chain, tiny_model_dir)
    cli = build_cli(args, run=False)
    assert isinstance(cli.model, LightningModule)
    assert isinstance(cli.datamodule, LightningDataModule)
    assert cli.trainer is not None


def test_full_sft_composes_on_easy_sft(tiny_model_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    easy, full = REPO / "configs/math/sft_easy.yaml", REPO / "configs/math/sft_full.yaml"
    cli = build_cli(["--config", str(easy), "--config", str(full), "--model.init_args.model", tiny_model_dir], run=False)
    assert cli.datamodule.train_source.levels == [1, 2, 3, 4, 5]
    cli = build_cli(["--config", str(easy), "--model.init_args.model", tiny_model_dir], run=False)
    assert cli.datamodule.train_source.levels == [1, 2, 3]
