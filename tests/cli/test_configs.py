"""Every shipped YAML under configs/ (every subfolder) parses and instantiates its trainer, model and data.

Paths a user supplies (a base model, a generator export, a reward model) are placeholders in the configs;
the test points them at a tiny model saved with `save_pretrained`, the same way a user's model loads.
Configs that are deltas name the base they compose on in a first-line comment: `# composes on: FILE`.
"""

from pathlib import Path

import pytest
import yaml
from lightning.pytorch import LightningDataModule, LightningModule

from e2h.cli.main import build_cli, main

REPO = Path(__file__).resolve().parents[2]


def test_config_instantiates(experiment_config, config_args, monkeypatch):
    monkeypatch.chdir(REPO)
    cli = build_cli(config_args(experiment_config), run=False)
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
    assert cli.trainer.default_root_dir == "runs/math/sft_easy"  # the full run's folder is its own
    cli = build_cli(["--config", str(easy), "--config", str(full), "--model.init_args.model", tiny_model_dir], run=False)
    assert cli.trainer.default_root_dir == "runs/math/sft_full"


@pytest.mark.parametrize("profile, sft", [("tiny", "sft"), ("math", "sft_easy")])
def test_rest_em_trains_on_every_accepted_level_from_the_base(profile, sft, tiny_model_dir, monkeypatch):
    """The ReST-EM delta points SFT at the accepted records and lifts SFT's levels 1-3 filter (a mapping merges
    into the base config's, so the filter would otherwise stay and drop every accepted hard solution)."""
    monkeypatch.chdir(REPO)
    base = REPO / f"configs/{profile}/{sft}.yaml"
    cli = build_cli(["--config", str(base), "--config", str(REPO / f"configs/{profile}/rest_em.yaml"),
                     "--model.init_args.model", tiny_model_dir], run=False)
    assert cli.datamodule.train_source.source == f"runs/{profile}/rest_em.jsonl"
    assert cli.datamodule.train_source.levels is None
    assert cli.trainer.default_root_dir == f"runs/{profile}/rest_em"


def test_the_ppo_config_prints_its_argument_groups(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(REPO / "configs/tiny/ppo.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    assert printed["batch"] == {"rollout": 64, "group": 1, "minibatch": 16, "ppo_epochs": 1, "generation": None,
                                "forward": None}
    assert printed["rewards"]["process"] == "min" and printed["rewards"]["kl_coef"] == 0.01
    assert printed["sampling"]["max_new_tokens"] == 96 and printed["optimisation"]["vf_coef"] == 0.1
    assert printed["optimisation"]["advantage"] == "gae"
