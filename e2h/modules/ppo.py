r"""PPO with reward models supervised on easy problems (the paper's "easy outcome + process" PPO): the
LightningModule. Its arguments come in groups (`e2h.modules.ppo_args`: batch sizes, sampling, rewards,
optimisation); the maths is in `e2h.rl`.

Four models, one optimizer:

- **policy**: a causal LM (a generator export, any Hugging Face path, or a from-scratch config for tests);
- **reference**: a frozen copy of the policy's starting weights, for the KL penalty;
- **value**: a causal-LM decoder with a scalar per-token head (``AutoModelForTokenClassification``),
  initialised from the reward model (official) or from the policy (a fresh, zero-initialised head);
- **reward model**: a frozen PRM / ORM / OPRM export (`e2h.modules.RewardModelModule.save_hf`): the sigmoid
  of its output at a step's last token is the step score, at the final token the ORM score.

Policy and value are trained by **one optimizer with two parameter groups** (``policy``, ``value``; the
value's learning rate may differ) under Lightning's automatic optimisation, which is what FSDP and DeepSpeed
support: the strategy then wraps, shards and steps all of it like any other module.

One rollout takes K = rollout / minibatch x PPO epochs optimizer steps and K x accumulate_grad_batches loader
batches (`e2h.rl.rollout.RolloutPlan`). When fit starts this module hands that plan to its data module
(`PPOPromptsDataModule`), which yields each rollout's prompt batch that many times in a row, tagged with its
position: on position 0 this module generates the rollout, scores it, computes the reference log-probs,
values, per-token rewards, GAE advantages and returns, and caches it; every position then trains on its own
micro-batch of the cached rollout.

A rollout, step by step (`e2h.rl.maths` for the math, `e2h.rl.rewards` for the shaping):

1. sample one response per prompt (``sampling``: temperature, top-k, top-p; stop at EOS or
   ``max_new_tokens``), seeded from (seed, rollout number, rank) so a resumed run regenerates the same rollout;
2. old log-probs (policy), reference log-probs, values, all from temperature-scaled logits;
3. reward-model step scores at each step's last token (`e2h.text.alignment.step_end_tokens`: the steps a
   reward model scores, placed from character offsets), its final-token score for an ORM;
4. per response, ``(token, reward)`` pairs (``rewards``): process rewards (min / product / last shaping, or
   none), outcome (1/0 by the grader; ``hidden_outcome`` where the answer is hidden), ORM score, format
   penalty, by `e2h.rl.rewards.combine_rewards`; per-token rewards minus the KL coefficient x KL (k1 or k3,
   clamped; a fixed or adaptive coefficient);
5. reward scaling by the std (mean kept), GAE, whitened advantages (``optimisation``);
6. per micro-batch: clipped policy loss + ``vf_coef`` x clipped value loss.

**GRPO** (``optimisation.advantage: group``, ``batch.group: G``; Shao et al. 2024) is the same module without
the value model: each prompt is sampled G times in the rollout, steps 1-4 are as above, and step 5 becomes a
response's task reward (its step-4 rewards summed, KL excluded) minus its group's mean, divided by the group's
std (`e2h.rl.maths.group_advantages`), for every token of the response; step 6 is the clipped policy loss
plus ``rewards.kl_coef`` x the mean per-token KL to the reference (k3 in the GRPO paper), a loss term rather
than a reward. ``configs/tiny/grpo.yaml`` is the tiny study's.

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
from typing import Any

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from transformers import PreTrainedModel

from e2h.data.prompts import STOP_STRINGS
from e2h.data.records import ALL_LEVELS, difficulty_group, level_key
from e2h.eval.greedy import GreedyAccuracy
from e2h.generation.sampling import SamplingConfig, generate_tokens
from e2h.generation.seeding import stable_seed
from e2h.generation.static_cache import left_padded_positions
from e2h.grading import extract_answer
from e2h.modules.backbone import build_causal_lm, check_same_vocabulary
from e2h.modules.common import (
    check_budget,
    drop_frozen,
    optimizer_config,
    stop_if_gradients_not_finite,
    stop_if_not_finite,
    stop_if_weights_not_finite,
    with_frozen,
    write_hf_folder,
)
from e2h.modules.ppo_args import BatchSizes, Optimisation, Rewards, Sampling, as_dict, as_group
from e2h.modules.reward_head import build_reward_backbone
from e2h.rl import maths as rl
from e2h.rl.kl import AdaptiveKLController, FixedKLController, kl_penalty
from e2h.rl.rewards import combine_rewards, format_penalty, graded_outcome, orm_reward
from e2h.rl.rollout import ResponseReward, Rollout, RolloutPlan, response_mask
from e2h.text.alignment import step_end_tokens, token_char_offsets, values_at
from e2h.text.tokenizer import load_tokenizer
from e2h.training.strategies import gathered_parameters, generation_kwargs

log = logging.getLogger(__name__)

FROZEN = ("reference", "reward_model")
"""Attributes holding frozen models: not trained, not checkpointed (re-read from their paths)."""


EVAL_BUDGET = "model.init_args.eval_max_new_tokens (default: sampling.max_new_tokens)"


def _default_optimizer(params) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)


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
        batch: BatchSizes = BatchSizes(),
        sampling: Sampling = Sampling(),
        rewards: Rewards = Rewards(),
        optimisation: Optimisation = Optimisation(),
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
                None for a final-answer-only reward (``rewards: {process: null, orm_weight: 0}``).
            dtype, attn_implementation, gradient_checkpointing: as for the generator (policy and value).
            optimizer: one optimizer, called with two parameter groups (``policy``, ``value``).
            lr_scheduler: e.g. ``e2h.training.schedules.WarmupCosineLR`` (steps are optimizer steps).
            batch: rollout, minibatch, PPO epochs (totals over devices) and memory chunks (`BatchSizes`).
            sampling: how rollouts are sampled (`Sampling`).
            rewards: the task reward and the KL penalty (`Rewards`).
            optimisation: GAE, clipping, value loss, the value's learning rate (`Optimisation`).
            eval_max_new_tokens: greedy decoding limit for validation; default ``sampling.max_new_tokens``.
            log_rollouts: rollout responses shown as TensorBoard text per rollout.
        """
        super().__init__()
        # Typed on the module, plain dicts in the hyperparameters: checkpoints then load with torch's
        # weights_only unpickler, and hparams.yaml reads like the config.
        self.batch, self.sampling = as_group(BatchSizes, batch), as_group(Sampling, sampling)
        self.rewards, self.optimisation = as_group(Rewards, rewards), as_group(Optimisation, optimisation)
        batch, sampling, rewards, optimisation = (
            as_dict(group) for group in (self.batch, self.sampling, self.rewards, self.optimisation)
        )
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if (policy is None) == (policy_config is None):
            raise ValueError("give exactly one of `policy` (a path or hub id) and `policy_config` (from scratch)")
        if reward_model is None and self.rewards.reads_reward_model:
            raise ValueError(
                "rewards.process and rewards.orm_weight read a reward model: give `reward_model` (a PRM / ORM "
                "export), or set rewards: {process: null, orm_weight: 0} for a final-answer-only reward"
            )
        if self.optimisation.group_relative:
            if self.batch.group < 2:
                raise ValueError(
                    "optimisation.advantage: group compares each prompt's responses: set batch.group to 2 or more "
                    f"(got {self.batch.group})"
                )
            if value_model is not None:
                raise ValueError("optimisation.advantage: group (GRPO) has no value model; leave value_model null")
        elif self.batch.group != 1:
            raise ValueError(
                f"batch.group {self.batch.group} samples several responses per prompt, which only group-relative "
                "advantages use: set optimisation.advantage: group (GRPO), or batch.group: 1 for PPO"
            )
        if reward_model is None and value_model is None and policy is None and not self.optimisation.group_relative:
            raise ValueError("without a reward model the value model starts from `value_model` or `policy`; give one")
        if tokenizer is None and policy is None:
            raise ValueError("a from-scratch policy needs `tokenizer` (e.g. 'char' or a tokenizer path)")
        self.tokenizer = load_tokenizer(tokenizer or policy)
        if self.tokenizer.eos_token_id is None or self.tokenizer.pad_token_id is None:
            raise ValueError("the policy's tokenizer needs an EOS and a pad token")
        self.optimizer_factory: Callable = optimizer
        self.scheduler_factory: Callable | None = lr_scheduler
        self.policy: PreTrainedModel | None = None
        self.reference: PreTrainedModel | None = None
        self.value: PreTrainedModel | None = None
        self.reward_model: PreTrainedModel | None = None
        r = self.rewards
        self.kl_controller = (
            AdaptiveKLController(r.kl_coef, r.kl_target, r.kl_horizon) if r.kl_target is not None
            else FixedKLController(r.kl_coef)
        )
        s = self.sampling
        self.rollout_sampling = SamplingConfig(
            max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, backend=s.backend
        )
        self.eval_sampling = SamplingConfig(
            max_new_tokens=eval_max_new_tokens or s.max_new_tokens, stop=STOP_STRINGS, backend=s.backend
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
        if not self.optimisation.group_relative:  # GRPO has no value model
            self.value = build_reward_backbone(h.value_model or h.reward_model or h.policy, None, self.tokenizer,
                                               h.dtype, h.attn_implementation, h.gradient_checkpointing)
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

    @property
    def steps_per_rollout(self) -> int:
        """K: optimizer steps spent on one rollout (minibatches per epoch x PPO epochs)."""
        return self.batch.plan().steps_per_rollout

    def rollout_plan(self) -> RolloutPlan:
        """The rollout on the trainer's devices and gradient accumulation (one device without a trainer)."""
        trainer = self._trainer
        if trainer is None:
            return self.batch.plan()
        return self.batch.plan(int(trainer.world_size), int(trainer.accumulate_grad_batches))

    def micro_batch_indices(self, rollout_number: int, position: int, size: int) -> Tensor:
        """Which rollout rows the training step at `position` of a rollout of `size` rows trains on.

        Each PPO epoch is a permutation of the rows drawn from (seed, rollout, epoch), cut into
        micro-batches in order; `position` counts micro-batches over the epochs.
        """
        micro = self.rollout_plan().micro_batch
        per_epoch = size // micro
        epoch, j = divmod(position, per_epoch)
        if epoch >= self.batch.ppo_epochs:
            raise IndexError(f"position {position} is past the rollout's {per_epoch * self.batch.ppo_epochs} batches")
        generator = torch.Generator().manual_seed(stable_seed(self.sampling.seed, "epoch", rollout_number, epoch))
        order = torch.randperm(size, generator=generator)
        return order[j * micro : (j + 1) * micro]

    # --- forward passes -------------------------------------------------------------------------------

    def _response_logits(self, model: PreTrainedModel, ids: Tensor, attention: Tensor, width: int) -> Tensor:
        """Temperature-scaled float32 logits predicting the `width` response tokens at the end of the rows."""
        out = model(input_ids=ids, attention_mask=attention, position_ids=left_padded_positions(attention),
                    logits_to_keep=width + 1, use_cache=False)
        return out.logits[:, :width].float() / self.sampling.temperature

    def _values(self, ids: Tensor, attention: Tensor, width: int, model: PreTrainedModel | None = None) -> Tensor:
        """The value of the state before each of the `width` response tokens (float32)."""
        model = self.value if model is None else model
        out = model(input_ids=ids, attention_mask=attention, position_ids=left_padded_positions(attention))
        return out.logits.squeeze(-1)[:, -width - 1 : -1].float()

    @staticmethod
    def _token_logp(logits: Tensor, tokens: Tensor) -> Tensor:
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)

    def _chunks(self, n: int) -> Iterator[slice]:
        size = self.batch.forward or self.rollout_plan().micro_batch
        for start in range(0, n, size):
            yield slice(start, min(start + size, n))

    @torch.no_grad()
    def _score_rollout_tokens(self, ids: Tensor, attention: Tensor, width: int) -> dict[str, Tensor]:
        """Old and reference log-probs, values ``[R, T]`` and reward-model probabilities ``[R, T]`` at the
        response tokens, in chunks of ``batch.forward`` rows."""
        responses = ids[:, -width:]
        parts: dict[str, list[Tensor]] = {"old_logp": [], "ref_logp": [], "values": [], "rm_probs": []}
        for s in self._chunks(len(ids)):
            tokens = responses[s]
            parts["old_logp"].append(self._token_logp(self._response_logits(self.policy, ids[s], attention[s], width), tokens))
            parts["ref_logp"].append(self._token_logp(self._response_logits(self.reference, ids[s], attention[s], width), tokens))
            if self.value is not None:
                parts["values"].append(self._values(ids[s], attention[s], width))
            if self.reward_model is None:  # final-answer-only reward: no scores are read
                parts["rm_probs"].append(torch.zeros(ids[s].shape[0], width, device=ids.device))
                continue
            positions = left_padded_positions(attention[s])
            rm = self.reward_model(input_ids=ids[s], attention_mask=attention[s], position_ids=positions)
            parts["rm_probs"].append(torch.sigmoid(rm.logits.squeeze(-1)[:, -width:].float()))
        return {k: torch.cat(v) for k, v in parts.items() if v}

    # --- rollout -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate_rollout(self, prompts: Sequence[str], rollout_number: int) -> tuple[Tensor, Tensor, int]:
        """Sample one response per prompt: ``(input_ids, attention_mask, prompt_width)``, prompts left-padded,
        responses cut after their first EOS and right-padded. Seeded from (seed, rollout, rank); the global
        RNG is left as it was."""
        tok = self.tokenizer
        rows: list[tuple[list[int], list[int]]] = []
        was_training = self.policy.training
        self.policy.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), gathered_parameters(self.policy):
            torch.manual_seed(stable_seed(self.sampling.seed, "rollout", rollout_number, self.global_rank))
            step = self.batch.generation or len(prompts)
            for start in range(0, len(prompts), step):
                enc, responses = generate_tokens(self.policy, tok, prompts[start : start + step], self.rollout_sampling,
                                                 generate_kwargs=generation_kwargs(self))
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
        r = self.rewards
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
        answer = extract_answer(text, free_text=stopped)  # a clipped response earns no free-text answer
        outcome, graded = graded_outcome(answer, gold, r.hidden_outcome)  # one grader call for reward and log
        correct = None if graded is None else float(graded)
        outcome = outcome if r.outcome else 0.0
        orm = r.orm_weight * orm_reward(final_score, r.orm_center) if r.orm_weight else 0.0
        penalty = r.penalty_scale * format_penalty(text, stopped) if r.penalty_scale else 0.0
        pairs = combine_rewards(
            ends, step_scores, last, scheme=r.process, outcome=outcome + orm, penalty=penalty,
            upper_bound=r.process_upper_bound, per_step_bonus=r.process_bonus, process_scale=r.process_scale,
        )
        process = sum(r for _, r in pairs) - outcome - orm - penalty
        rm_score = min(step_scores) if step_scores else final_score
        return ResponseReward(pairs, outcome, process, orm, penalty, rm_score, correct, text)

    def make_rollout(self, records: Sequence[dict[str, Any]], rollout_number: int) -> Rollout:
        """Generate, score and compute advantages for one rollout (steps 1-5 of the module docstring)."""
        r, o = self.rewards, self.optimisation
        start = time.perf_counter()
        # A group's responses sit side by side (what `e2h.rl.maths.group_advantages` expects); PPO: groups of 1.
        records = [record for record in records for _ in range(self.batch.group)]
        ids, attention, width_p = self.generate_rollout([r["prompt"] for r in records], rollout_number)
        generated = time.perf_counter()
        width = ids.shape[1] - width_p
        mask, stopped = response_mask(ids[:, width_p:], self.tokenizer.eos_token_id)
        mask &= attention[:, width_p:].bool()
        scored = self._score_rollout_tokens(ids, attention, width)
        for name in ("old_logp", "ref_logp", "values"):
            if name in scored:
                self._check_finite(f"rollout {name.replace('_', ' ')}", scored[name], mask)

        rewards_per_response = []
        for b, record in enumerate(records):
            valid = ids[b, width_p:][mask[b]].tolist()
            rewards_per_response.append(
                self.response_reward(valid, bool(stopped[b]), scored["rm_probs"][b][mask[b]], record.get("answer"))
            )
        placed = rl.place_rewards([r.pairs for r in rewards_per_response], mask.shape, device=ids.device)
        kl = kl_penalty(scored["old_logp"], scored["ref_logp"], r.kl_estimator, r.kl_clamp)
        kl_coef = self.kl_controller.value
        if o.group_relative:
            # GRPO: a response's task reward (outcome, process, ORM, penalty: its placed rewards summed) against
            # its group's, the same for each of its tokens; the KL is a loss term in training_step.
            scores = rl.masked_sum(placed, mask, dim=1)
            per_response = rl.group_advantages(scores, self.batch.group, o.group_std)
            advantages = torch.where(mask, per_response.unsqueeze(1), torch.zeros((), device=mask.device))
            returns = None
        else:
            rewards = rl.token_rewards(placed, kl, kl_coef, mask)
            self._check_finite("per-token rewards", rewards, mask)
            if r.scale:
                mean, std = self._global_mean_std(rewards, mask)
                rewards = rl.scale_rewards_by_std(rewards, mask, std=std, mean=mean)
            advantages, returns = rl.gae(rewards, scored["values"], mask, o.gamma, o.lam)
            if o.whiten_advantages:
                mean, std = self._global_mean_std(advantages, mask)
                advantages = rl.masked_whiten(advantages, mask, mean=mean, std=std)
            self._check_finite("returns", returns, mask)
        self._check_finite("advantages", advantages, mask)

        mean_seq_kl = self._global_mean(rl.masked_sum(kl, mask, dim=1))  # padding may hold an inf k3 estimate
        self.kl_controller.update(mean_seq_kl, int(len(records) * self.rollout_plan().world))
        done = time.perf_counter()
        self._timing = {"generation": generated - start, "scoring": done - generated}
        self._log_rollout(rewards_per_response, records, mask, stopped, kl, kl_coef, mean_seq_kl, scored, returns)
        self.rollouts_made += 1
        return Rollout(rollout_number, ids, attention, width_p, mask, scored["old_logp"], scored.get("values"),
                       advantages, returns, ready_at=done,
                       ref_logp=scored["ref_logp"] if o.group_relative else None)

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
        ids, attention, mask, width = rollout.rows(index)
        tokens = ids[:, -width:]
        logits = self._response_logits(self.policy, ids, attention, width)
        logp = self._token_logp(logits, tokens)
        cut = slice(0, width)
        o = self.optimisation
        pg_loss, pg_clip, approx_kl = rl.policy_loss(
            logp, rollout.old_logp[index][:, cut], rollout.advantages[index][:, cut], mask, o.clip
        )
        with torch.no_grad():
            entropy = rl.entropy_from_logits(logits.detach(), mask)
        logged = {"loss/policy": pg_loss, "policy/clip_fraction": pg_clip, "policy/approx_kl": approx_kl,
                  "policy/entropy": entropy}
        if o.group_relative:
            # GRPO's KL to the reference is a loss term, differentiated through the current policy's log-probs.
            r = self.rewards
            kl = kl_penalty(logp, rollout.ref_logp[index][:, cut], r.kl_estimator, r.kl_clamp)
            kl_loss = rl.masked_mean(kl, mask)
            loss = pg_loss + self.kl_controller.value * kl_loss
            logged["loss/kl"] = kl_loss
        else:
            values = self._values(ids, attention, width)
            vf_loss, vf_clip = rl.value_loss(
                values, rollout.old_values[index][:, cut], rollout.returns[index][:, cut], mask, o.value_clip
            )
            loss = pg_loss + o.vf_coef * vf_loss
            logged.update({"loss/value": vf_loss, "value/clip_fraction": vf_clip})
        self._checks = {"policy loss": pg_loss.detach(), "loss": loss.detach()}
        if "loss/value" in logged:
            self._checks["value loss"] = logged["loss/value"].detach()
        n = len(index)
        for name, value in {"loss/total": loss, **logged}.items():
            self.log(f"train/{name}", value.detach(), batch_size=n, prog_bar=name == "loss/total")
        return loss

    def on_before_optimizer_step(self, optimizer) -> None:
        # Checked here rather than after the forward: one host-device sync per optimizer step, and a
        # non-finite loss never reaches the weights or a checkpoint.
        for name, value in self._checks.items():
            stop_if_not_finite(value, f"PPO: {name}", self.global_step)
        stop_if_gradients_not_finite(self, "PPO")

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
        groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad], "name": "policy"}]
        if self.value is not None:  # GRPO has none
            value_group: dict[str, Any] = {"params": [p for p in self.value.parameters() if p.requires_grad],
                                           "name": "value"}
            if self.optimisation.value_lr is not None:
                value_group["lr"] = self.optimisation.value_lr
            groups.append(value_group)
        return optimizer_config(groups, self.optimizer_factory, self.scheduler_factory, self.trainer)

    def setup(self, stage: str) -> None:
        # The batch sizes are stated here, once: the data module yields each rollout's prompts as this plan says.
        datamodule = getattr(self.trainer, "datamodule", None)
        if stage == "fit" and hasattr(datamodule, "rollout_plan"):
            datamodule.rollout_plan = self.rollout_plan()

    def on_fit_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps modules' modes as it finds them;
        # the trained models must be in train mode (gradient checkpointing only acts there).
        self.policy.train()
        if self.value is not None:
            self.value.train()
        check_budget(self, "train", self.rollout_sampling.max_new_tokens, "model.init_args.sampling.max_new_tokens",
                     self.sampling.budget_check)
        # Exact resume needs checkpoints at rollout boundaries: refuse a schedule that would write others.
        k = self.steps_per_rollout
        for callback in self.trainer.checkpoint_callbacks:
            every = getattr(callback, "_every_n_train_steps", 0)
            if every and every % k:
                raise ValueError(
                    f"ModelCheckpoint(every_n_train_steps={every}) would save inside a rollout; PPO checkpoints must "
                    f"be at rollout boundaries: use a multiple of {k} ({self.batch.plan().describe()})"
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
        }
        if returns is not None:
            metrics["value/explained_variance"] = float(rl.explained_variance(scored["values"], returns, mask))
        if self.optimisation.group_relative:
            # Groups whose responses all scored alike give no gradient (advantage 0): GRPO's dead share.
            totals = torch.tensor([p.outcome + p.process + p.orm + p.penalty for p in parts]).view(-1, self.batch.group)
            flat = (totals.max(dim=1).values - totals.min(dim=1).values <= 1e-9).double()
            metrics["rollout/groups_all_alike"] = self._global_mean(flat.to(self.device))
        if self.reward_model is not None:
            metrics["reward/rm_score"] = mean([p.rm_score for p in parts])
        # Clip rate by level: responses cut by max_new_tokens (no EOS). A level whose correct solutions do not
        # fit the budget shows here, instead of as a reward that can never be earned.
        levels = [r.get("level") for r in records]
        for level in ALL_LEVELS:
            clipped = [float(not s) for s, lv in zip(stopped.tolist(), levels) if lv == level]
            totals = self._reduce_sum(torch.tensor([sum(clipped), len(clipped)], dtype=torch.float64, device=self.device))
            if totals[1] > 0:
                metrics[f"rollout/clip_rate_{level_key(level)}"] = float(totals[0] / totals[1])
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

    def on_validation_start(self) -> None:
        check_budget(self, "val", self.eval_sampling.max_new_tokens, EVAL_BUDGET, self.sampling.budget_check)

    def on_test_start(self) -> None:
        check_budget(self, "test", self.eval_sampling.max_new_tokens, EVAL_BUDGET, self.sampling.budget_check)

    def on_validation_epoch_end(self) -> None:
        self.greedy.log_to(self, "val")

    def on_test_epoch_end(self) -> None:
        self.greedy.log_to(self, "test")

    # --- checkpoints and export -----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stop_if_weights_not_finite(self, "PPO checkpoint")
        # Lets `e2h export` rebuild the right module class from a bare checkpoint.
        checkpoint["e2h_module"] = f"{type(self).__module__}.{type(self).__qualname__}"
        checkpoint["ppo"] = {
            "kl_controller": self.kl_controller.state_dict(),
            "steps_per_rollout": self.steps_per_rollout,
            "global_step": int(self.global_step),
        }
        drop_frozen(checkpoint, FROZEN)

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
                                 "resume with the same batch.rollout, batch.minibatch and batch.ppo_epochs")
            self.kl_controller.load_state_dict(ppo["kl_controller"])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """`nn.Module.load_state_dict`, with the frozen models' weights (left out of checkpoints) taken from
        the models as built from their paths, so a strict load still checks every trained weight."""
        if self.policy is not None:
            state_dict = with_frozen(self, state_dict, FROZEN)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def save_hf(self, folder: str) -> None:
        """Write the trained policy as a Hugging Face causal-LM folder (weights, config, tokenizer)."""
        write_hf_folder(self, "policy", folder)
