from e2h.datamodules.ppo import PPOPromptsDataModule
from e2h.datamodules.problems import FewShot, MetaMath, ProblemsDataModule
from e2h.datamodules.sources import ProblemSource
from e2h.datamodules.steps import ScoreInput, StepsDataModule, StepSource

__all__ = ["FewShot", "MetaMath", "PPOPromptsDataModule", "ProblemSource", "ProblemsDataModule", "ScoreInput", "StepSource", "StepsDataModule"]
