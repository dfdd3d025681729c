"""Strategy configs (configs/strategy/) compose with every experiment config, the FSDP wrap policy finds the
decoder layers of any Hugging Face model, and 2-process DDP on CPU (gloo) trains the generator and the
reward model with each process reading half of the data."""

import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import lightning.pytorch.strategies.deepspeed as lightning_deepspeed
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy
from transformers import AutoModelForCausalLM, LlamaForTokenClassification
from transformers.models.llama.modeling_llama import LlamaDecoderLayer

from e2h.cli.main import build_cli
from e2h.training.strategies import DecoderLayerFSDP, DeepSpeedZeRO, decoder_layer_classes, top_level_models

REPO = Path(__file__).resolve().parents[2]
STRATEGIES = {
    "ddp.yaml": DDPStrategy,
    "fsdp.yaml": DecoderLayerFSDP,
    "deepspeed_zero2.yaml": DeepSpeedZeRO,
    "deepspeed_zero3.yaml": DeepSpeedZeRO,
}


@pytest.fixture
def deepspeed_constructible(monkeypatch):
    """DeepSpeed is a GPU extra. Its Lightning strategy only sets DeepSpeed's log level while it builds its
    config, so where it is not installed the configs are instantiated with a stand-in for that logger."""
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        logger = logging.getLogger("deepspeed-stand-in")
        stand_in = types.ModuleType("deepspeed")
        stand_in.utils = types.SimpleNamespace(logging=types.SimpleNamespace(logger=logger))
        monkeypatch.setitem(sys.modules, "deepspeed", stand_in)
        monkeypatch.setattr(lightning_deepspeed, "_DEEPSPEED_AVAILABLE", True)
        monkeypatch.setattr(lightning_deepspeed, "_DEEPSPEED_GREATER_EQUAL_0_16", True)


def test_every_strategy_config_is_tested():
    assert sorted(p.name for p in (REPO / "configs/strategy").glob("*.yaml")) == sorted(STRATEGIES)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_strategy_composes_with_every_experiment(experiment_config, strategy, config_args, deepspeed_constructible,
                                                 monkeypatch):
    monkeypatch.chdir(REPO)
    args = config_args(experiment_config) + ["--config", str(REPO / "configs/strategy" / strategy)]
    # FSDP and DeepSpeed run on GPUs only; instantiating them needs none.
    cli = build_cli(args + ["--trainer.accelerator", "cpu"], run=False)
    assert isinstance(cli.trainer.strategy, STRATEGIES[strategy])
    if strategy.startswith("deepspeed"):
        assert cli.trainer.strategy.config["zero_optimization"]["stage"] == int(strategy[-6])
    if strategy == "fsdp.yaml":
        assert cli.trainer.strategy._state_dict_type == "sharded"
        assert cli.trainer.strategy.activation_checkpointing_layers


def test_fsdp_wraps_decoder_layers_and_whole_models(tiny_llama):
    class PPOLike(torch.nn.Module):  # as PPOModule holds its models
        def __init__(self):
            super().__init__()
            self.policy, self.reference = tiny_llama.build(), tiny_llama.build()
            self.value_model = tiny_llama.build(LlamaForTokenClassification)

    module = PPOLike()
    assert decoder_layer_classes(module) == {LlamaDecoderLayer}
    # the outer models, not their inner LlamaModel: each becomes its own FSDP unit
    assert top_level_models(module) == [module.policy, module.reference, module.value_model]


def test_fsdp_without_hugging_face_model_says_what_to_do():
    with pytest.raises(ValueError, match="auto_wrap_policy"):
        decoder_layer_classes(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_fsdp_strategy_keeps_lightning_arguments():
    strategy = DecoderLayerFSDP(sharding_strategy="SHARD_GRAD_OP", state_dict_type="full", activation_checkpointing_layers=False)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.sharding_strategy.name == "SHARD_GRAD_OP"
    assert strategy._state_dict_type == "full"


def test_deepspeed_strategy_is_lightnings(deepspeed_constructible):
    assert isinstance(DeepSpeedZeRO(stage=3), DeepSpeedStrategy)


# ---------------------------------------------------------------------------------------------------------
# 2-process DDP on CPU: the real launcher (Lightning starts the second process), gloo, the shipped configs.

PROBLEMS_PER_LEVEL = 32  # x 3 training levels = 96 records
BATCH = 8


def _ddp_fit(tmp_path: Path, config: str, overrides: list[str]) -> dict:
    out = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "e2h.cli", "fit",
        "--config", str(REPO / config), "--config", str(REPO / "configs/strategy/ddp.yaml"),
        "--trainer.devices", "2", "--trainer.max_steps", "-1", "--trainer.max_epochs", "1",
        "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.default_root_dir", str(out), "--trainer.callbacks", "[]",
        "--trainer.callbacks+", "lightning.pytorch.callbacks.ModelCheckpoint",
        "--trainer.callbacks.dirpath", str(out / "checkpoints"), "--trainer.callbacks.save_on_train_epoch_end", "true",
        "--trainer.callbacks+", "e2h.training.callbacks.ExportHF", "--trainer.callbacks.folder", str(out / "hf"),
        "--data.init_args.batch_size", str(BATCH),
    ] + overrides
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    (ckpt,) = (out / "checkpoints").glob("*.ckpt")
    return {"ckpt": torch.load(ckpt, map_location="cpu", weights_only=False), "hf": out / "hf", "log": done.stderr}


def _expected_steps() -> int:
    # each of the 2 processes reads half of the 96 records: 48 / batch 8 = 6 optimizer steps in the epoch
    # (one process alone would take 12)
    return PROBLEMS_PER_LEVEL * 3 // (2 * BATCH)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_two_cpu_processes_train_the_generator(tmp_path):
    per_level = json.dumps({"train": PROBLEMS_PER_LEVEL, "test": 4})
    run = _ddp_fit(tmp_path, "configs/tiny/sft.yaml", [
        "--data.init_args.train.synthetic_per_level", per_level, "--data.init_args.val.synthetic_per_level", per_level,
    ])
    assert run["ckpt"]["global_step"] == _expected_steps()
    assert "distributed_backend=gloo" in run["log"] and "All distributed processes registered" in run["log"]
    model = AutoModelForCausalLM.from_pretrained(run["hf"])  # rank 0's export of the synchronised weights
    saved = run["ckpt"]["state_dict"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, saved[f"model.{name}"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ddp_two_cpu_processes_train_the_reward_model(tmp_path):
    source = json.dumps([{"kind": "synthetic", "split": "train", "levels": [1, 2, 3], "wrong_fraction": 0.5,
                          "synthetic_per_level": {"train": PROBLEMS_PER_LEVEL, "test": 4}}])
    run = _ddp_fit(tmp_path, "configs/tiny/prm.yaml", ["--data.init_args.train", source])
    assert run["ckpt"]["global_step"] == _expected_steps()
    model = LlamaForTokenClassification.from_pretrained(run["hf"])
    torch.testing.assert_close(model.score.weight, run["ckpt"]["state_dict"]["model.score.weight"])
