"""LightningDataModules: what each stage's module reads, and from where. They never import a module: a module
that needs something of its data module hands it over (see `PPOPromptsDataModule.rollout_plan`)."""

from e2h.datamodules.ppo import PPOPromptsDataModule
from e2h.datamodules.preferences import PreferencePairsDataModule
from e2h.datamodules.problems import FewShot, MetaMath, ProblemsDataModule
from e2h.datamodules.reward_model import ScoreInput, StepsDataModule
from e2h.datamodules.sources import ProblemSource, StepSource

__all__ = [
    "FewShot",
    "MetaMath",
    "PPOPromptsDataModule",
    "PreferencePairsDataModule",
    "ProblemSource",
    "ProblemsDataModule",
    "ScoreInput",
    "StepSource",
    "StepsDataModule",
]
