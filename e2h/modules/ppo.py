r"""PPO with reward models supervised on easy problems (the paper's "easy outcome + process" PPO).

Four models, one optimizer:

- **policy**: a causal LM (a generator export, any Hugging Face path, or a from-scratch config for tests);
- **reference**: a frozen copy of the policy's starting weights, for the KL penalty;
- **value**: a causal-LM decoder with a scalar per-token head (``AutoModelForTokenClassification``),
  initialised from the reward model (official) or from the policy (a fresh, zero-initialised head);
- **reward model**: a frozen PRM / ORM / OPRM export (`e2h.modules.RewardModelModule.save_hf`): the sigmoid
  of its output at a step's last token is the step score, at the final token the ORM score.

Policy and value are trained by **one optimizer with two parameter groups** (``policy``, ``value``; the
value's learning rate may differ) under Lightning's automatic optimisation, which is what FSDP and DeepSpeed
support (DESIGN.md section 5).

Batch-size vocabulary (official values in brackets; see also `e2h.rl.maths`)
---------------------------------------------------------------------
- ``rollout_batch_size`` [512]: responses sampled with the current policy before any update, over all
  devices (one response per prompt). Reward scaling and advantage whitening use the whole rollout.
- ``minibatch_size`` [64, "step batch"]: responses per optimizer step, over all devices.
- ``ppo_epochs`` [1]: passes over the rollout; each pass is shuffled and cut into minibatches.
- **micro-batch** = minibatch / (devices x ``trainer.accumulate_grad_batches``): what one device forwards
  at once. Lightning's gradient accumulation joins the micro-batches of a minibatch.

One rollout therefore takes K = rollout / minibatch x ppo_epochs optimizer steps (official: 8) and
K x accumulate_grad_batches loader batches. `PPOPromptsDataModule` yields each rollout's prompt batch that
many times in a row, tagged with its position: on position 0 this module generates the rollout, scores it,
computes the reference log-probs, values, per-token rewards, GAE advantages and returns, and caches it; every
position then trains on its own micro-batch of the cached rollout.

A rollout, step by step (`e2h.rl.maths` for the math, `e2h.rl.rewards` for the shaping):

1. sample one response per prompt (temperature, top-k, top-p; stop at EOS or ``max_new_tokens``), seeded
   from (``seed``, rollout number, rank) so a resumed run regenerates the same rollout;
2. old log-probs (policy), reference log-probs, values, all from temperature-scaled logits;
3. reward-model step scores at each step's last token (`e2h.text.alignment.step_end_tokens`: the steps a
   reward model scores, placed from character offsets), its final-token score for an ORM;
4. per response, ``(token, reward)`` pairs: process rewards (``process_reward``: min / product / last
   shaping, or none), outcome (1/0 by the grader; ``hidden_outcome`` where the answer is hidden), ORM score,
   format penalty, by `e2h.rl.rewards.combine_rewards`; per-token rewards minus ``kl_coef`` x KL
   (``kl_estimator`` k1 or k3, ``kl_clamp``; a fixed or adaptive coefficient);
5. reward scaling by the std (mean kept), GAE (``gamma``, ``lam``), whitened advantages;
6. per micro-batch: clipped policy loss + ``vf_coef`` x clipped value loss.

Checkpoints resume exactly when they are taken at rollout boundaries (every K optimizer steps): the
policy, value, optimizer, scheduler, KL controller and the data position are restored and the next rollout is
regenerated from its seed. A checkpoint inside a rollout cannot resume (the rollout it trained on was made
by weights no longer available); `ModelCheckpoint(every_n_train_steps=...)` must be a multiple of K, which
fit checks. Frozen reference and reward-model weights are left out of checkpoints (they are re-read from
their paths).

Any non-finite reward, value, log-prob, advantage or loss stops the run with a FloatingPointError naming
it, before the optimizer step, so the last checkpoint stays the last good state.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from e2h.rl import maths as rl
from e2h.rl.kl import KL_KINDS, AdaptiveKLController, FixedKLController, kl_penalty
from e2h.datamodules.ppo import RolloutPlan
from e2h.generation.static_cache import static_generate
from e2h.generation.seeding import stable_seed
from e2h.generation.sampling import BACKENDS, SamplingConfig
from e2h.grading import extract_answer, is_equivalent
from e2h.modules.common import optimizer_config, stop_if_not_finite, write_hf_folder
from e2h.modules.backbone import build_causal_lm
from e2h.modules.reward_head import build_reward_backbone
from e2h.eval.greedy import GreedyAccuracy
from e2h.data.prompts import STOP_STRINGS
from e2h.data.records import difficulty_group
from e2h.training.strategies import gathered_parameters, generation_kwargs
from e2h.rl.rewards import HIDDEN_OUTCOME, PROCESS_SCHEMES, combine_rewards, format_penalty, orm_reward, outcome_reward
from e2h.text.alignment import step_end_tokens, token_char_offsets, values_at
from e2h.text.tokenizer import load_tokenizer

log = logging.getLogger(__name__)

FROZEN = ("reference", "reward_model")
"""Attributes holding frozen models: not trained, not checkpointed (re-read from their paths)."""


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)


# ---------------------------------------------------------------------------------------------------------
# Pure helpers: masks, positions, step ends
# ---------------------------------------------------------------------------------------------------------


def response_mask(responses: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """The valid tokens of right-padded responses ``[B, T]``: everything up to and including the first EOS
    (all ``T`` tokens when there is none), and whether each response stopped at an EOS."""
    is_eos = responses == eos_id
    stopped = is_eos.any(dim=1)
    # Tokens after the first EOS are those with an EOS strictly before them.
    eos_before = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return ~eos_before, stopped


def position_ids_for(attention_mask: Tensor) -> Tensor:
    """Position ids of left-padded rows, as `transformers` generation computes them (pads at 0)."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 0)


# ---------------------------------------------------------------------------------------------------------
# The cached rollout
# ---------------------------------------------------------------------------------------------------------


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
    old_values: Tensor
    advantages: Tensor
    returns: Tensor
    ready_at: float  # perf_counter when the rollout was complete (optimisation time starts)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


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


class PPOModule(LightningModule):
    def __init__(
        self,
        policy: str | None = None,
        policy_config: dict[str, Any] | None = None,
        tokenizer: str | None = None,
        reference: str | None = None,
        value_model: str | None = None,
        reward_model: str | None = None,
        dtype: str | None = None,
        attn_implementation: str | None = "sdpa",
        gradient_checkpointing: bool = False,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        value_lr: float | None = None,
        # batch sizes
        rollout_batch_size: int = 512,
        minibatch_size: int = 64,
        ppo_epochs: int = 1,
        generation_batch_size: int | None = None,
        forward_batch_size: int | None = None,
        # sampling
        max_new_tokens: int = 768,
        temperature: float = 0.7,
        top_k: int = 50,
        top_p: float = 1.0,
        generation_backend: str = "generate",
        seed: int = 0,
        # rewards
        outcome: bool = True,
        hidden_outcome: float = HIDDEN_OUTCOME,
        process_reward: str | None = "min",
        process_upper_bound: float = 0.5,
        process_bonus: float = 0.25,
        process_scale: float = 1.0,
        orm_weight: float = 0.0,
        orm_center: float = 0.0,
        penalty_scale: float = 1.0,
        kl_coef: float = 0.01,
        kl_estimator: str = "k1",
        kl_clamp: float | None = 0.0,
        kl_target: float | None = None,
        kl_horizon: float = 10000.0,
        scale_rewards: bool = True,
        # PPO
        gamma: float = 1.0,
        lam: float = 1.0,
        clip: float = 0.2,
        value_clip: float = 0.2,
        vf_coef: float = 0.1,
        whiten_advantages: bool = True,
        # evaluation and logging
        eval_max_new_tokens: int | None = None,
        log_rollouts: int = 4,
    ) -> None:
        """
        Args:
            policy: the starting policy, a Hugging Face causal-LM path or hub id (a generator export).
            policy_config: a from-scratch policy config instead (tests), e.g. ``{model_type: llama, ...}``.
            tokenizer: ``char`` or a tokenizer path; default: the policy's own.
            reference: the frozen reference policy; default: the policy's starting weights.
            value_model: where the value model starts; default: `reward_model` (official), else the policy. A
                causal-LM path (e.g. the policy) gets a fresh zero-initialised scalar head.
            reward_model: the frozen reward model, a token-classification folder (PRM / ORM / OPRM export);
                None for a final-answer-only reward (``process_reward: null``, ``orm_weight: 0``).
            dtype, attn_implementation, gradient_checkpointing: as for the generator (policy and value).
            optimizer: one optimizer, called with two parameter groups (``policy``, ``value``).
            lr_scheduler: e.g. ``e2h.training.schedules.WarmupCosineLR`` (steps are optimizer steps).
            value_lr: the value group's learning rate; default: the optimizer's.
            rollout_batch_size, minibatch_size, ppo_epochs: see the module docstring (totals over devices).
            generation_batch_size: prompts per `generate` call (memory); default: the whole rollout.
            forward_batch_size: rows per no-grad forward when scoring the rollout; default: the micro-batch.
            max_new_tokens, temperature, top_k, top_p: rollout sampling (top_k 0: off). seed: rollout seeds.
            generation_backend: ``generate`` or ``static`` (`e2h.generation.static_cache`: a StaticCache loop
                compiled with CUDA graphs on a GPU, compiled once: the optimizer updates the weights in place) for
                rollouts and greedy validation.
            outcome: add the graded final-answer outcome (1/0; `hidden_outcome` where the answer is hidden).
            process_reward: ``min``, ``product``, ``last`` (PRM step-score shaping) or None.
            process_upper_bound, process_bonus, process_scale: the shaping's bound, per-solution bonus, scale.
            orm_weight, orm_center: add ``orm_weight x (final-token score - orm_center)`` (an ORM reward).
            penalty_scale: times `e2h.rl.rewards.format_penalty` (0 off; -1 x scale at worst).
            kl_coef: the KL coefficient (the start value when `kl_target` is set: adaptive controller).
            kl_estimator, kl_clamp: ``k1`` or ``k3``; per-token KL clamped below at `kl_clamp` (None: off).
            kl_target, kl_horizon: adaptive KL (Ziegler et al.) towards `kl_target` per sequence.
            scale_rewards: divide per-token rewards by their rollout std (mean kept), as the official code.
            gamma, lam: GAE. clip, value_clip: PPO ratio and value clipping. vf_coef: value-loss weight.
            whiten_advantages: whiten advantages over the rollout.
            eval_max_new_tokens: greedy decoding limit for validation; default `max_new_tokens`.
            log_rollouts: rollout responses shown as TensorBoard text per rollout.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if (policy is None) == (policy_config is None):
            raise ValueError("give exactly one of `policy` (a path or hub id) and `policy_config` (from scratch)")
        if reward_model is None and (process_reward not in (None, "none") or orm_weight):
            raise ValueError(
                "process_reward and orm_weight read a reward model: give `reward_model` (a PRM / ORM export), or "
                "set process_reward: null and orm_weight: 0 for a final-answer-only reward"
            )
        if reward_model is None and value_model is None and policy is None:
            raise ValueError("without a reward model the value model starts from `value_model` or `policy`; give one")
        if tokenizer is None and policy is None:
            raise ValueError("a from-scratch policy needs `tokenizer` (e.g. 'char' or a tokenizer path)")
        if process_reward not in (None, "none", *PROCESS_SCHEMES):
            raise ValueError(f"unknown process_reward {process_reward!r}; choose one of {PROCESS_SCHEMES} or None")
        if generation_backend not in BACKENDS:
            raise ValueError(f"generation_backend must be one of {BACKENDS}, got {generation_backend!r}")
        if kl_estimator not in KL_KINDS:
            raise ValueError(f"unknown kl_estimator {kl_estimator!r}; choose one of {KL_KINDS}")
        for name, value in (("rollout_batch_size", rollout_batch_size), ("minibatch_size", minibatch_size),
                            ("ppo_epochs", ppo_epochs)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if rollout_batch_size % minibatch_size:
            raise ValueError(f"rollout_batch_size {rollout_batch_size} is not a multiple of minibatch_size {minibatch_size}")
        self.tokenizer = load_tokenizer(tokenizer or policy)
        if self.tokenizer.eos_token_id is None or self.tokenizer.pad_token_id is None:
            raise ValueError("the policy's tokenizer needs an EOS and a pad token")
        self.optimizer_factory: Callable = optimizer
        self.scheduler_factory: Callable | None = lr_scheduler
        self.policy: PreTrainedModel | None = None
        self.reference: PreTrainedModel | None = None
        self.value: PreTrainedModel | None = None
        self.reward_model: PreTrainedModel | None = None
        self.kl_controller = (
            AdaptiveKLController(kl_coef, kl_target, kl_horizon) if kl_target is not None else FixedKLController(kl_coef)
        )
        self.eval_sampling = SamplingConfig(
            max_new_tokens=eval_max_new_tokens or max_new_tokens, stop=STOP_STRINGS, backend=generation_backend
        )
        self.greedy = GreedyAccuracy(log_rollouts)
        self._rollout: Rollout | None = None
        self._timing: dict[str, float] = {}
        self._checks: dict[str, Tensor] = {}
        self.rollouts_made = 0  # rollouts generated by this process (the tests count them)

    # --- models ----------------------------------------------------------------------------------------

    def configure_model(self) -> None:
        # Built here, not in __init__, so FSDP / DeepSpeed can shard them as they are created; idempotent.
        if self.policy is not None:
            return
        h = self.hparams
        self.policy = build_causal_lm(h.policy, h.policy_config, self.tokenizer, h.dtype, h.attn_implementation,
                                      h.gradient_checkpointing)
        if h.reference is not None or h.policy is not None:
            self.reference = build_causal_lm(h.reference or h.policy, None, self.tokenizer, h.dtype, h.attn_implementation)
        else:  # from scratch: the reference is the policy's starting point
            self.reference = copy.deepcopy(self.policy)
        self.value = build_reward_backbone(h.value_model or h.reward_model or h.policy, None, self.tokenizer, h.dtype,
                                           h.attn_implementation, h.gradient_checkpointing)
        if h.reward_model is not None:  # none for a final-answer-only reward
            self.reward_model = build_reward_backbone(h.reward_model, None, self.tokenizer, h.dtype, h.attn_implementation)
            check_same_vocabulary(self.tokenizer, h.reward_model)
        for name in FROZEN:
            model = getattr(self, name)
            if model is None:
                continue
            model.requires_grad_(False)
            model.eval()

    def train(self, mode: bool = True) -> PPOModule:
        # Lightning switches the whole module to train mode at fit start; the frozen models stay in eval
        # mode (no dropout in the reference log-probs or the rewards).
        super().train(mode)
        for name in FROZEN:
            model = getattr(self, name, None)
            if model is not None:
                model.eval()
        return self

    # --- sizes -----------------------------------------------------------------------------------------

    def _world(self) -> tuple[int, int]:
        """(devices, gradient-accumulation steps); (1, 1) without a trainer."""
        trainer = self._trainer
        if trainer is None:
            return 1, 1
        return int(trainer.world_size), int(trainer.accumulate_grad_batches)

    @property
    def steps_per_rollout(self) -> int:
        """K: optimizer steps spent on one rollout (minibatches per epoch x PPO epochs)."""
        h = self.hparams
        return h.rollout_batch_size // h.minibatch_size * h.ppo_epochs

    def rollout_plan(self) -> RolloutPlan:
        """Per-device prompts per rollout and loader batches per rollout (for `PPOPromptsDataModule`)."""
        h = self.hparams
        world, accumulate = self._world()
        if h.rollout_batch_size % world or h.minibatch_size % world:
            raise ValueError(f"rollout_batch_size {h.rollout_batch_size} and minibatch_size {h.minibatch_size} "
                             f"must be multiples of the {world} devices")
        if (h.minibatch_size // world) % accumulate:
            raise ValueError(f"the per-device minibatch {h.minibatch_size // world} is not a multiple of "
                             f"accumulate_grad_batches {accumulate}")
        return RolloutPlan(h.rollout_batch_size // world, self.steps_per_rollout * accumulate)

    def micro_batch_size(self) -> int:
        """Responses one device forwards per training step."""
        world, accumulate = self._world()
        return self.hparams.minibatch_size // world // accumulate

    def micro_batch_indices(self, rollout_number: int, position: int, size: int) -> Tensor:
        """Which rollout rows the training step at `position` of a rollout of `size` rows trains on.

        Each PPO epoch is a permutation of the rows drawn from (seed, rollout, epoch), cut into
        micro-batches in order; `position` counts micro-batches over the epochs.
        """
        micro = self.micro_batch_size()
        per_epoch = size // micro
        epoch, j = divmod(position, per_epoch)
        if epoch >= self.hparams.ppo_epochs:
            raise IndexError(f"position {position} is past the rollout's {per_epoch * self.hparams.ppo_epochs} batches")
        generator = torch.Generator().manual_seed(stable_seed(self.hparams.seed, "epoch", rollout_number, epoch))
        order = torch.randperm(size, generator=generator)
        return order[j * micro : (j + 1) * micro]

    # --- forward passes -------------------------------------------------------------------------------

    def _response_logits(self, model: PreTrainedModel, ids: Tensor, attention: Tensor, width: int) -> Tensor:
        """Temperature-scaled float32 logits predicting the `width` response tokens at the end of the rows."""
        out = model(input_ids=ids, attention_mask=attention, position_ids=position_ids_for(attention),
                    logits_to_keep=width + 1, use_cache=False)
        return out.logits[:, :width].float() / self.hparams.temperature

    def _values(self, ids: Tensor, attention: Tensor, width: int, model: PreTrainedModel | None = None) -> Tensor:
        """The value of the state before each of the `width` response tokens (float32)."""
        model = self.value if model is None else model
        out = model(input_ids=ids, attention_mask=attention, position_ids=position_ids_for(attention))
        return out.logits.squeeze(-1)[:, -width - 1 : -1].float()

    @staticmethod
    def _token_logp(logits: Tensor, tokens: Tensor) -> Tensor:
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def _chunks(self, n: int) -> Iterator[slice]:
        size = self.hparams.forward_batch_size or self.micro_batch_size()
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))

    @torch.no_grad()
    def _score_rollout_tokens(self, ids: Tensor, attention: Tensor, width: int) -> dict[str, Tensor]:
        """Old and reference log-probs, values ``[R, T]`` and reward-model probabilities ``[R, T]`` at the
        response tokens, in chunks of `forward_batch_size`."""
        responses = ids[:, -width:]
        parts: dict[str, list[Tensor]] = {"old_logp": [], "ref_logp": [], "values": [], "rm_probs": []}
        for s in self._chunks(len(ids)):
            tokens = responses[s]
            parts["old_logp"].append(self._token_logp(self._response_logits(self.policy, ids[s], attention[s], width), tokens))
            parts["ref_logp"].append(self._token_logp(self._response_logits(self.reference, ids[s], attention[s], width), tokens))
            parts["values"].append(self._values(ids[s], attention[s], width))
            if self.reward_model is None:  # final-answer-only reward: no scores are read
                parts["rm_probs"].append(torch.zeros(ids[s].shape[0], width, device=ids.device))
                continue
            rm = self.reward_model(input_ids=ids[s], attention_mask=attention[s], position_ids=position_ids_for(attention[s]))
            parts["rm_probs"].append(torch.sigmoid(rm.logits.squeeze(-1)[:, -width:].float()))
        return {k: torch.cat(v) for k, v in parts.items()}

    # --- rollout -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate_rollout(self, prompts: Sequence[str], rollout_number: int) -> tuple[Tensor, Tensor, int]:
        """Sample one response per prompt: ``(input_ids, attention_mask, prompt_width)``, prompts left-padded,
        responses cut after their first EOS and right-padded. Seeded from (seed, rollout, rank); the global
        RNG is left as it was."""
        h = self.hparams
        tok = self.tokenizer
        rows: list[tuple[list[int], list[int]]] = []
        was_training = self.policy.training
        self.policy.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), gathered_parameters(self.policy):
            torch.manual_seed(stable_seed(h.seed, "rollout", rollout_number, self.global_rank))
            step = h.generation_batch_size or len(prompts)
            for start in range(0, len(prompts), step):
                enc = tok(list(prompts[start : start + step]), return_tensors="pt", padding=True, padding_side="left")
                enc = {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}
                sampling = dict(do_sample=True, temperature=h.temperature, top_k=h.top_k, top_p=h.top_p,
                                max_new_tokens=h.max_new_tokens, pad_token_id=tok.pad_token_id,
                                eos_token_id=tok.eos_token_id)
                synced = generation_kwargs(self)
                if h.generation_backend == "static" and not synced:
                    out = static_generate(self.policy, enc["input_ids"], enc["attention_mask"],
                                          compile=self.device.type == "cuda", **sampling)
                else:
                    out = self.policy.generate(**enc, **sampling, use_cache=True, **synced)
                responses = out[:, enc["input_ids"].shape[1] :]
                valid, _ = response_mask(responses, tok.eos_token_id)
                for b in range(len(responses)):
                    prompt = enc["input_ids"][b][enc["attention_mask"][b].bool()].tolist()
                    rows.append((prompt, responses[b][valid[b]].tolist()))
        self.policy.train(was_training)
        width_p = max(len(p) for p, _ in rows)
        width_t = max(max(len(r) for _, r in rows), 1)
        pad = tok.pad_token_id
        ids = torch.full((len(rows), width_p + width_t), pad, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for b, (p, r) in enumerate(rows):
            ids[b, width_p - len(p) : width_p] = torch.tensor(p)
            ids[b, width_p : width_p + len(r)] = torch.tensor(r, dtype=torch.long)
            attention[b, width_p - len(p) : width_p + len(r)] = 1
        return ids.to(self.device), attention.to(self.device), width_p

    def response_reward(
        self, response_ids: Sequence[int], stopped: bool, rm_probs: Tensor, gold: str | None
    ) -> ResponseReward:
        """One response's ``(token, reward)`` pairs and reward parts (see the module docstring, step 4).

        `response_ids` are its valid tokens (EOS included when `stopped`), `rm_probs` the reward model's
        probabilities at them, `gold` the answer (None: hidden).
        """
        h = self.hparams
        n_text = len(response_ids) - 1 if stopped else len(response_ids)
        text, offsets = token_char_offsets(self.tokenizer, response_ids[:n_text])
        ends = step_end_tokens(text, offsets)
        last = len(response_ids) - 1
        step_scores = values_at(rm_probs, ends)
        final_score = float(rm_probs[last])
        for name, values in (("reward-model step score", step_scores), ("reward-model final score", [final_score])):
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(
                    f"PPO: {name} is not finite ({values}) at step {self.global_step}; stopping before the "
                    "optimizer step (the last checkpoint is kept as it was)"
                )
        answer = extract_answer(text)
        correct = None if gold is None else float(is_equivalent(answer, gold))
        outcome = outcome_reward(answer, gold, h.hidden_outcome) if h.outcome else 0.0
        orm = h.orm_weight * orm_reward(final_score, h.orm_center) if h.orm_weight else 0.0
        penalty = h.penalty_scale * format_penalty(text, stopped) if h.penalty_scale else 0.0
        scheme = None if h.process_reward in (None, "none") else h.process_reward
        pairs = combine_rewards(
            ends, step_scores, last, scheme=scheme, outcome=outcome + orm, penalty=penalty,
            upper_bound=h.process_upper_bound, per_step_bonus=h.process_bonus, process_scale=h.process_scale,
        )
        process = sum(r for _, r in pairs) - outcome - orm - penalty
        rm_score = min(step_scores) if step_scores else final_score
        return ResponseReward(pairs, outcome, process, orm, penalty, rm_score, correct, text)

    def make_rollout(self, records: Sequence[dict[str, Any]], rollout_number: int) -> Rollout:
        """Generate, score and compute advantages for one rollout (steps 1-5 of the module docstring)."""
        h = self.hparams
        start = time.perf_counter()
        ids, attention, width_p = self.generate_rollout([r["prompt"] for r in records], rollout_number)
        generated = time.perf_counter()
        width = ids.shape[1] - width_p
        mask, stopped = response_mask(ids[:, width_p:], self.tokenizer.eos_token_id)
        mask &= attention[:, width_p:].bool()
        scored = self._score_rollout_tokens(ids, attention, width)
        for name in ("old_logp", "ref_logp", "values"):
            self._check_finite(f"rollout {name.replace('_', ' ')}", scored[name], mask)

        rewards_per_response = []
        for b, record in enumerate(records):
            valid = ids[b, width_p:][mask[b]].tolist()
            rewards_per_response.append(
                self.response_reward(valid, bool(stopped[b]), scored["rm_probs"][b][mask[b]], record.get("answer"))
            )
        placed = rl.place_rewards([r.pairs for r in rewards_per_response], mask.shape, device=ids.device)
        kl = kl_penalty(scored["old_logp"], scored["ref_logp"], h.kl_estimator, h.kl_clamp)
        kl_coef = self.kl_controller.value
        rewards = rl.token_rewards(placed, kl, kl_coef, mask)
        self._check_finite("per-token rewards", rewards, mask)
        if h.scale_rewards:
            mean, std = self._global_mean_std(rewards, mask)
            rewards = rl.scale_rewards_by_std(rewards, mask, std=std, mean=mean)
        advantages, returns = rl.gae(rewards, scored["values"], mask, h.gamma, h.lam)
        if h.whiten_advantages:
            mean, std = self._global_mean_std(advantages, mask)
            advantages = rl.masked_whiten(advantages, mask, mean=mean, std=std)
        self._check_finite("advantages", advantages, mask)
        self._check_finite("returns", returns, mask)

        seq_kl = (kl * mask).sum(1)
        mean_seq_kl = self._global_mean(seq_kl)
        self.kl_controller.update(mean_seq_kl, int(len(records) * self._world()[0]))
        done = time.perf_counter()
        self._timing = {"generation": generated - start, "scoring": done - generated}
        self._log_rollout(rewards_per_response, records, mask, stopped, kl, kl_coef, mean_seq_kl, scored, returns)
        self.rollouts_made += 1
        return Rollout(rollout_number, ids, attention, width_p, mask, scored["old_logp"], scored["values"],
                       advantages, returns, ready_at=done)

    # --- training ------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        number, position = int(batch["rollout"]), int(batch["position"])
        if position == 0:
            self._rollout = None  # free the old rollout before making the next
            self._rollout = self.make_rollout(batch["records"], number)
        elif self._rollout is None or self._rollout.number != number:
            raise RuntimeError(
                f"training step at position {position} of rollout {number}, but that rollout was never generated "
                f"here: a run can only resume from a checkpoint at a rollout boundary (every {self.steps_per_rollout} "
                "optimizer steps)"
            )
        rollout = self._rollout
        index = self.micro_batch_indices(number, position, len(rollout)).to(rollout.input_ids.device)
        ids, attention, mask, width = _trimmed(rollout, index)
        tokens = ids[:, -width:]
        logits = self._response_logits(self.policy, ids, attention, width)
        logp = self._token_logp(logits, tokens)
        values = self._values(ids, attention, width)
        cut = slice(0, width)
        pg_loss, pg_clip, approx_kl = rl.policy_loss(logp, rollout.old_logp[index][:, cut], rollout.advantages[index][:, cut],
                                                     mask, self.hparams.clip)
        vf_loss, vf_clip = rl.value_loss(values, rollout.old_values[index][:, cut], rollout.returns[index][:, cut], mask,
                                         self.hparams.value_clip)
        loss = pg_loss + self.hparams.vf_coef * vf_loss
        with torch.no_grad():
            entropy = rl.entropy_from_logits(logits.detach(), mask)
        self._checks = {"policy loss": pg_loss.detach(), "value loss": vf_loss.detach(), "loss": loss.detach()}
        n = len(index)
        for name, value in (("loss/total", loss), ("loss/policy", pg_loss), ("loss/value", vf_loss),
                            ("policy/clip_fraction", pg_clip), ("policy/approx_kl", approx_kl),
                            ("policy/entropy", entropy), ("value/clip_fraction", vf_clip)):
            self.log(f"train/{name}", value.detach(), batch_size=n, prog_bar=name == "loss/total")
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Checked here rather than after the forward: one host-device sync per optimizer step, and a
        # non-finite loss never reaches the weights or a checkpoint.
        for name, value in self._checks.items():
            stop_if_not_finite(value, f"PPO: {name}", self.global_step)

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        # The rollout's last training step: its optimisation time is known now.
        rollout = self._rollout
        if rollout is None or int(batch["position"]) != self.rollout_plan().batches_per_rollout - 1:
            return
        optimisation = time.perf_counter() - rollout.ready_at
        total = optimisation + sum(self._timing.values())
        for name, seconds in (*self._timing.items(), ("optimisation", optimisation)):
            self.log(f"time/{name}_s", seconds, batch_size=1)
            self.log(f"time/{name}_fraction", seconds / max(total, 1e-9), batch_size=1)

    def configure_optimizers(self):
        value_group: dict[str, Any] = {"params": [p for p in self.value.parameters() if p.requires_grad], "name": "value"}
        if self.hparams.value_lr is not None:
            value_group["lr"] = self.hparams.value_lr
        groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad], "name": "policy"}, value_group]
        return optimizer_config(groups, self.optimizer_factory, self.scheduler_factory, self.trainer)

    def on_fit_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps modules' modes as it finds them;
        # the trained models must be in train mode (gradient checkpointing only acts there).
        self.policy.train()
        self.value.train()
        # Exact resume needs checkpoints at rollout boundaries: refuse a schedule that would write others.
        k = self.steps_per_rollout
        for callback in self.trainer.checkpoint_callbacks:
            every = getattr(callback, "_every_n_train_steps", 0)
            if every and every % k:
                raise ValueError(
                    f"ModelCheckpoint(every_n_train_steps={every}) would save inside a rollout; PPO checkpoints must "
                    f"be at rollout boundaries: use a multiple of {k} (rollout {self.hparams.rollout_batch_size} / "
                    f"minibatch {self.hparams.minibatch_size} x {self.hparams.ppo_epochs} epochs)"
                )

    # --- statistics over devices -----------------------------------------------------------------------

    def _reduce_sum(self, x: Tensor) -> Tensor:
        if self._trainer is None or self.trainer.world_size == 1:
            return x
        return self.trainer.strategy.reduce(x, reduce_op="sum")

    def _global_mean(self, per_row: Tensor) -> float:
        total = self._reduce_sum(torch.stack([per_row.sum(), per_row.new_tensor(float(per_row.numel()))]))
        return float(total[0] / total[1])

    def _global_mean_std(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and population std of the valid entries over all devices' rollouts."""
        valid = mask.bool()
        xs = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device)).double()
        sums = self._reduce_sum(torch.stack([xs.sum(), (xs**2).sum(), valid.sum().double()]))
        mean = sums[0] / sums[2]
        var = (sums[1] / sums[2] - mean**2).clamp(min=0)
        return mean.to(x.dtype), var.sqrt().to(x.dtype)

    def _check_finite(self, name: str, x: Tensor, mask: Tensor) -> None:
        bad = mask.bool() & ~torch.isfinite(x)
        if bool(bad.any()):
            b, t = (int(i) for i in bad.nonzero()[0])
            raise FloatingPointError(
                f"PPO: {name} is {x[b, t].item()} (response {b}, token {t}) at step {self.global_step}; stopping "
                "before the optimizer step (the last checkpoint is kept as it was)"
            )

    # --- logging ---------------------------------------------------------------------------------------

    def _log_rollout(self, parts: list[ResponseReward], records, mask, stopped, kl, kl_coef, mean_seq_kl, scored, returns) -> None:
        n = len(parts)

        def mean(xs: Sequence[float]) -> float:
            if not xs:
                return float("nan")
            return self._global_mean(torch.tensor([float(x) for x in xs], dtype=torch.float64, device=self.device))

        lengths = mask.sum(1).double()
        metrics = {
            "reward/outcome": mean([p.outcome for p in parts]),
            "reward/process": mean([p.process for p in parts]),
            "reward/orm": mean([p.orm for p in parts]),
            "reward/penalty": mean([p.penalty for p in parts]),
            "reward/kl_term": -kl_coef * mean_seq_kl,
            "reward/total": mean([p.outcome + p.process + p.orm + p.penalty for p in parts]) - kl_coef * mean_seq_kl,
            "rollout/kl": mean_seq_kl,
            "rollout/kl_coef": kl_coef,
            "rollout/response_length": self._global_mean(lengths),
            "rollout/stopped_fraction": mean([float(s) for s in stopped.tolist()]),
            "value/explained_variance": float(rl.explained_variance(scored["values"], returns, mask)),
        }
        if self.reward_model is not None:
            metrics["reward/rm_score"] = mean([p.rm_score for p in parts])
        for group in ("easy", "hard"):
            graded = [p.correct for p, r in zip(parts, records) if p.correct is not None and difficulty_group(r.get("level")) == group]
            if graded:
                metrics[f"rollout/acc_{group}_known"] = sum(graded) / len(graded)
        for name, value in metrics.items():
            self.log(f"train/{name}", float(value), batch_size=n, prog_bar=name == "reward/total")
        experiment = getattr(self.logger, "experiment", None)
        if self.hparams.log_rollouts and hasattr(experiment, "add_text"):
            shown = []
            for p, r in list(zip(parts, records))[: self.hparams.log_rollouts]:
                gold = "hidden" if r.get("answer") is None else r["answer"]
                shown.append(
                    f"**{r.get('unique_id')}** (level {r.get('level')}, gold {gold}): outcome {p.outcome:.2f}, "
                    f"process {p.process:.3f}, penalty {p.penalty:.2f}, RM min score {p.rm_score:.3f}\n\n"
                    f"```\n{r['prompt']}{p.text}\n```"
                )
            experiment.add_text("train/rollouts", "\n\n---\n\n".join(shown), self.global_step)

    # --- evaluation ------------------------------------------------------------------------------------

    def validation_step(self, batch: list[dict[str, Any]], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._grade_greedy(batch)

    def test_step(self, batch: list[dict[str, Any]], batch_idx: int) -> None:
        self._grade_greedy(batch)

    def _grade_greedy(self, problems: list[dict[str, Any]]) -> None:
        with gathered_parameters(self.policy):
            self.greedy.grade(self.policy, self.tokenizer, problems, self.eval_sampling, generation_kwargs(self))

    def on_validation_epoch_end(self) -> None:
        self.greedy.log_to(self, "val")

    def on_test_epoch_end(self) -> None:
        self.greedy.log_to(self, "test")

    # --- checkpoints and export -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lets `e2h export` rebuild the right module class from a bare checkpoint.
        checkpoint["e2h_module"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["ppo"] = {
            "kl_controller": self.kl_controller.state_dict(),
            "steps_per_rollout": self.steps_per_rollout,
            "global_step": int(self.global_step),
        }
        state = checkpoint.get("state_dict")
        if state is not None:  # frozen models are re-read from their paths
            for key in [k for k in state if k.split(".", 1)[0] in FROZEN]:
                del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ppo = checkpoint.get("ppo")
        if ppo is not None:
            k, step = int(ppo["steps_per_rollout"]), int(ppo["global_step"])
            if step % k:
                raise ValueError(
                    f"this checkpoint was written at step {step}, inside a rollout of {k} steps; PPO resumes exactly "
                    "only from a rollout boundary (save every multiple of K steps)"
                )
            if k != self.steps_per_rollout:
                raise ValueError(f"the checkpoint's rollout takes {k} steps, the configuration's {self.steps_per_rollout}; "
                                 "resume with the same rollout_batch_size, minibatch_size and ppo_epochs")
            self.kl_controller.load_state_dict(ppo["kl_controller"])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """`nn.Module.load_state_dict`, with the frozen models' weights (left out of checkpoints) taken from
        the models as built from their paths, so a strict load still checks every trained weight."""
        if self.policy is not None and any(k.split(".", 1)[0] not in FROZEN for k in state_dict):
            state_dict = dict(state_dict)
            for key, value in super().state_dict().items():
                if key.split(".", 1)[0] in FROZEN:
                    state_dict.setdefault(key, value)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def save_hf(self, folder: str) -> None:
        """Write the trained policy as a Hugging Face causal-LM folder (weights, config, tokenizer)."""
        write_hf_folder(self, "policy", folder)


# ---------------------------------------------------------------------------------------------------------
# Loading and small utilities
# ---------------------------------------------------------------------------------------------------------


def check_same_vocabulary(tokenizer: PreTrainedTokenizerBase, reward_model: str) -> None:
    """The reward model reads the policy's token ids as they are: its tokenizer (if it saved one) must be
    the policy's."""
    try:
        other = load_tokenizer(reward_model)
    except (OSError, ValueError):
        log.warning("%s has no tokenizer; assuming it shares the policy's", reward_model)
        return
    if other.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"the reward model {reward_model} has a different tokenizer from the policy; PPO scores the "
                         "policy's tokens directly, so both must share one vocabulary")


def _trimmed(rollout: Rollout, index: Tensor) -> tuple[Tensor, Tensor, Tensor, int]:
    """The rows `index` of a rollout without the columns that are padding in all of them:
    ``(input_ids, attention_mask, response mask, response width)``."""
    mask = rollout.mask[index]
    width = max(int(mask.sum(1).max()), 1)
    attention = rollout.attention_mask[index]
    p = rollout.prompt_width
    first = int(attention[:, :p].float().argmax(dim=1).min()) if p else 0  # first real prompt column
    cols = slice(first, p + width)
    return rollout.input_ids[index][:, cols], attention[:, cols], mask[:, :width], width
