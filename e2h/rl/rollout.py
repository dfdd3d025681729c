"""PPO's typed containers: the batch-size arithmetic of a rollout (`RolloutPlan`), the cached rollout a device
trains on (`Rollout`), one response's reward parts (`ResponseReward`), and the mask of valid response tokens.

Batch-size vocabulary (official values in brackets; totals over all devices):

- **rollout** [512]: responses sampled with the current policy before any update, one per prompt (PPO) or
  **group** responses per prompt (GRPO);
- **minibatch** [64, "step batch"]: responses per optimizer step;
- **PPO epochs** [1]: passes over the rollout, each shuffled and cut into minibatches;
- **micro-batch** = minibatch / (devices x gradient-accumulation steps): what one device forwards at once.

One rollout takes K = rollout / minibatch x PPO epochs optimizer steps, and K x accumulation loader batches on
each device. `RolloutPlan` is the only place these numbers are computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class RolloutPlan:
    """How a rollout of `rollout` responses maps onto `world` devices, optimizer steps and loader batches.

    The sizes are checked on construction, so a plan that exists is one that divides evenly.
    """

    rollout: int
    minibatch: int
    ppo_epochs: int = 1
    world: int = 1
    accumulate: int = 1
    group: int = 1

    def __post_init__(self) -> None:
        for name in ("rollout", "minibatch", "ppo_epochs", "world", "accumulate", "group"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout % self.minibatch:
            raise ValueError(f"the rollout batch {self.rollout} is not a multiple of the minibatch {self.minibatch}")
        if self.rollout % self.world or self.minibatch % self.world:
            raise ValueError(f"the rollout batch {self.rollout} and the minibatch {self.minibatch} must be multiples "
                             f"of the {self.world} devices")
        if (self.minibatch // self.world) % self.accumulate:
            raise ValueError(f"the per-device minibatch {self.minibatch // self.world} is not a multiple of "
                             f"accumulate_grad_batches {self.accumulate}")
        if (self.rollout // self.world) % self.group:
            # Each device samples whole groups, so group statistics never need another device's responses.
            raise ValueError(f"the per-device rollout {self.rollout // self.world} is not a multiple of the group of "
                             f"{self.group} responses per prompt")

    @property
    def steps_per_rollout(self) -> int:
        """K: optimizer steps spent on one rollout (minibatches per epoch x PPO epochs)."""
        return self.rollout // self.minibatch * self.ppo_epochs

    @property
    def prompts_per_rollout(self) -> int:
        """Prompts one device samples per rollout: its responses / the group (one response each for PPO)."""
        return self.rollout // self.world // self.group

    @property
    def batches_per_rollout(self) -> int:
        """Loader batches (training steps, micro-batches included) one device spends on a rollout."""
        return self.steps_per_rollout * self.accumulate

    @property
    def micro_batch(self) -> int:
        """Responses one device forwards per training step."""
        return self.minibatch // self.world // self.accumulate

    def describe(self) -> str:
        groups = f" ({self.rollout // self.group} prompts x {self.group})" if self.group > 1 else ""
        return f"rollout {self.rollout}{groups} / minibatch {self.minibatch} x {self.ppo_epochs} epochs"


@dataclass
class Rollout:
    """One rollout on this device. ``input_ids``/``attention_mask``: ``[R, P + T]``, prompts left-padded to
    ``P``, responses right-padded to ``T``; every other tensor is ``[R, T]`` over the response tokens."""

    number: int
    input_ids: Tensor
    attention_mask: Tensor
    prompt_width: int
    mask: Tensor
    old_logp: Tensor
    old_values: Tensor | None  # None without a value model (group-relative advantages)
    advantages: Tensor
    returns: Tensor | None
    ready_at: float  # perf_counter when the rollout was complete (optimisation time starts)
    ref_logp: Tensor | None = None  # kept when the KL is a loss term (group-relative advantages)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def rows(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor, int]:
        """The rows `index` without the columns that are padding in all of them:
        ``(input_ids, attention_mask, response mask, response width)``."""
        mask = self.mask[index]
        width = max(int(mask.sum(1).max()), 1)
        attention = self.attention_mask[index]
        p = self.prompt_width
        first = int(attention[:, :p].float().argmax(dim=1).min()) if p else 0  # first real prompt column
        cols = slice(first, p + width)
        return self.input_ids[index][:, cols], attention[:, cols], mask[:, :width], width


@dataclass(frozen=True)
class ResponseReward:
    """One response's reward parts (before the KL term) and what they were computed from."""

    pairs: list[tuple[int, float]]
    outcome: float
    process: float
    orm: float
    penalty: float
    rm_score: float  # the reward model's min step score (final-token score when there are no steps)
    correct: float | None  # graded against a known answer; None when hidden
    text: str


def response_mask(responses: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """The valid tokens of right-padded responses ``[B, T]``: everything up to and including the first EOS
    (all ``T`` tokens when there is none), and whether each response stopped at an EOS."""
    is_eos = responses == eos_id
    stopped = is_eos.any(dim=1)
    # Tokens after the first EOS are those with an EOS strictly before them.
    eos_before = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return ~eos_before, stopped
