from e2h.modules.generator import GeneratorModule
from e2h.modules.ppo import PPOModule
from e2h.modules.reward_model import RewardModelModule

__all__ = ["GeneratorModule", "PPOModule", "RewardModelModule"]
