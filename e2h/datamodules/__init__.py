from e2h.datamodules.problems import FewShot, MetaMath, ProblemsDataModule
from e2h.datamodules.sources import ProblemSource

__all__ = ["FewShot", "MetaMath", "ProblemSource", "ProblemsDataModule"]
