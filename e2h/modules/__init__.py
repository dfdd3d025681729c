from e2h.modules.dpo import DPOModule
from e2h.modules.generator import GeneratorModule
from e2h.modules.ppo import PPOModule
from e2h.modules.reward_model import RewardModelModule

__all__ = ["DPOModule", "GeneratorModule", "PPOModule", "RewardModelModule"]
