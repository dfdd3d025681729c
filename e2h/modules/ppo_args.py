"""`PPOModule`'s argument groups: batch sizes, sampling, rewards, optimisation. Each a typed dataclass whose
fields carry their own docstrings; in YAML each is a mapping under the module's ``init_args``::

    batch: {rollout: 64, minibatch: 16, ppo_epochs: 1}
    sampling: {max_new_tokens: 96, temperature: 0.7, top_k: 50}
    rewards: {process: min, kl_coef: 0.01}
    optimisation: {gamma: 1.0, lam: 1.0, vf_coef: 0.1}

A field left out keeps its default (the official recipe's values where there is one). Each group checks its
own values when built, so a bad config fails before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from e2h.eval.budget import BUDGET_CHECKS
from e2h.generation.sampling import BACKENDS
from e2h.rl.kl import KL_KINDS
from e2h.rl.rewards import HIDDEN_OUTCOME, PROCESS_SCHEMES
from e2h.rl.rollout import RolloutPlan

G = TypeVar("G")


def as_group(cls: type[G], value: G | Mapping[str, Any] | None) -> G:
    """`value` as a `cls`: a mapping (as a checkpoint's hyperparameters hold it) is unpacked, None is the default."""
    if value is None:
        return cls()
    if isinstance(value, Mapping):
        return cls(**value)
    return value


def as_dict(group: Any) -> dict[str, Any]:
    return dataclasses.asdict(group)


@dataclass(frozen=True)
class BatchSizes:
    """How many responses a rollout has and how it is trained on (totals over all devices; see
    `e2h.rl.rollout` for the vocabulary and the arithmetic)."""

    rollout: int = 512
    """Responses sampled with the current policy before any update, one per prompt (official: 512), or
    `group` per prompt. Reward scaling and advantage whitening use the whole rollout."""
    group: int = 1
    """Responses sampled per prompt, side by side in the rollout: 1 for PPO; G >= 2 for group-relative
    advantages (``optimisation.advantage: group``, GRPO), which compare a prompt's G responses."""
    minibatch: int = 64
    """Responses per optimizer step (the official "step batch", 64)."""
    ppo_epochs: int = 1
    """Passes over each rollout, each shuffled and cut into minibatches (official: 1)."""
    generation: int | None = None
    """Prompts per generation call (memory); null: the whole rollout at once."""
    forward: int | None = None
    """Rows per no-grad forward when scoring a rollout (memory); null: the micro-batch."""

    def __post_init__(self) -> None:
        self.plan()  # checks the sizes
        for name in ("generation", "forward"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"batch.{name} must be >= 1 or null, got {getattr(self, name)}")

    def plan(self, world: int = 1, accumulate: int = 1) -> RolloutPlan:
        """The rollout on `world` devices with `accumulate` gradient-accumulation steps."""
        return RolloutPlan(self.rollout, self.minibatch, self.ppo_epochs, world, accumulate, self.group)


@dataclass(frozen=True)
class Sampling:
    """How rollouts are sampled."""

    max_new_tokens: int = 768
    """Longest response, in tokens (official: 768)."""
    temperature: float = 0.7
    """Sampling temperature; log-probs are computed from the same temperature-scaled logits."""
    top_k: int = 50
    """Sample among the k most likely tokens; 0: no top-k."""
    top_p: float = 1.0
    """Nucleus sampling threshold; 1: off."""
    backend: Literal["generate", "static"] = "generate"
    """``generate`` (`model.generate`) or ``static`` (`e2h.generation.static_cache`: a StaticCache loop compiled
    with CUDA graphs on a GPU, compiled once: the optimizer updates the weights in place), for rollouts and
    greedy validation."""
    seed: int = 0
    """Seeds each rollout (with its number and the rank), so a resumed run regenerates the same rollout."""
    budget_check: Literal["error", "warn", "off"] = "error"
    """When max_new_tokens is shorter than the median reference solution of a level of the prompts
    (`e2h.eval.budget`): stop with the numbers (``error``), only warn, or do not check (``off``)."""

    def __post_init__(self) -> None:
        if self.budget_check not in BUDGET_CHECKS:
            raise ValueError(f"sampling.budget_check must be one of {BUDGET_CHECKS}, got {self.budget_check!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"sampling.backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.temperature > 0:
            raise ValueError(f"sampling.temperature must be > 0 (rollouts are sampled), got {self.temperature}")
        if self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass(frozen=True)
class Rewards:
    """The task reward of a response and the KL penalty to the reference (the paper's "easy outcome +
    process" by default; `e2h.rl.rewards`, `e2h.rl.kl`)."""

    outcome: bool = True
    """Add the graded final answer's outcome: 1 or 0, `hidden_outcome` where the answer is hidden."""
    hidden_outcome: float = HIDDEN_OUTCOME
    """The outcome where the answer is hidden (hard problems in easy-to-hard training; official: 0.25)."""
    process: Literal["min", "product", "last"] | None = "min"
    """How the reward model's step scores shape per-step rewards; null: no process reward (ORM or
    final-answer-only training)."""
    process_upper_bound: float = 0.5
    """Step scores above this bound are not penalised."""
    process_bonus: float = 0.25
    """Bonus per solution, shared out over its steps."""
    process_scale: float = 1.0
    """Factor on the process rewards."""
    orm_weight: float = 0.0
    """Add orm_weight x (the reward model's final-token score - orm_center): an ORM's reward; 0: off."""
    orm_center: float = 0.0
    """Subtracted from the final-token score (0.5 makes the ORM reward signed)."""
    penalty_scale: float = 1.0
    """Factor on the format penalty (0 to -1: missing or misplaced final answer); 0: off."""
    kl_coef: float = 0.01
    """The KL coefficient (the start value when `kl_target` is set)."""
    kl_estimator: Literal["k1", "k3"] = "k1"
    """Per-token KL estimator: k1 (official) or k3."""
    kl_clamp: float | None = 0.0
    """Per-token KL clamped below at this value (official: 0); null: unclamped."""
    kl_target: float | None = None
    """Adaptive KL coefficient (Ziegler et al.) towards this KL per sequence; null: a fixed coefficient."""
    kl_horizon: float = 10000.0
    """The adaptive controller's horizon, in samples."""
    scale: bool = True
    """Divide per-token rewards by their rollout's std, keeping their mean (as the official code)."""

    def __post_init__(self) -> None:
        if self.process is not None and self.process not in PROCESS_SCHEMES:
            raise ValueError(f"unknown rewards.process {self.process!r}; choose one of {PROCESS_SCHEMES} or null")
        if self.kl_estimator not in KL_KINDS:
            raise ValueError(f"unknown rewards.kl_estimator {self.kl_estimator!r}; choose one of {KL_KINDS}")
        for name in ("hidden_outcome", "process_scale", "orm_weight", "orm_center", "penalty_scale", "kl_coef"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"rewards.{name} must be a finite number, got {getattr(self, name)!r}")

    @property
    def reads_reward_model(self) -> bool:
        """Whether these rewards need a reward model's scores."""
        return self.process is not None or bool(self.orm_weight)


ADVANTAGES = ("gae", "group")


@dataclass(frozen=True)
class Optimisation:
    """Advantages and losses (`e2h.rl.maths`); the official values by default."""

    advantage: Literal["gae", "group"] = "gae"
    """``gae``: PPO, a value model and GAE over per-token rewards (the KL penalty inside the reward). ``group``:
    GRPO, no value model; each response's advantage is its task reward against its prompt's group
    (`e2h.rl.maths.group_advantages`; needs ``batch.group >= 2``), and the KL to the reference is a loss
    term, ``rewards.kl_coef`` x the per-token ``rewards.kl_estimator`` (k3 in the GRPO paper). gamma, lam,
    value_clip, vf_coef, whiten_advantages, value_lr and ``rewards.scale`` are PPO's only."""
    group_std: bool = True
    """``group``: divide by the group's standard deviation (GRPO); false: only subtract the mean (Dr. GRPO)."""
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 1.0
    """GAE lambda."""
    clip: float = 0.2
    """PPO's ratio clipping."""
    value_clip: float = 0.2
    """Value clipping around the rollout's values."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    whiten_advantages: bool = True
    """Whiten the advantages over the rollout."""
    value_lr: float | None = None
    """The value parameter group's learning rate; null: the optimizer's."""

    def __post_init__(self) -> None:
        if not (0.0 <= self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0):
            raise ValueError(f"optimisation.gamma and .lam must lie in [0, 1], got {self.gamma}, {self.lam}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"unknown optimisation.advantage {self.advantage!r}; choose one of {ADVANTAGES}")

    @property
    def group_relative(self) -> bool:
        """GRPO: group-relative advantages, no value model, the KL as a loss term."""
        return self.advantage == "group"
