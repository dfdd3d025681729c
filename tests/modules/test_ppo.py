"""PPO: rollout scheduling, reward placement, generation consistency, exact resume, NaN stop, export, learning."""

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from transformers import AutoModelForCausalLM, LlamaForTokenClassification

from e2h.cli.main import main
from e2h.datamodules import ProblemSource
from e2h.eval.budget import BudgetTooShort
from e2h.modules import PPOModule
from e2h.modules.ppo_args import BatchSizes, Optimisation, Rewards, Sampling
from e2h.text.tokenizer import build_char_tokenizer

SMALL_SYNTHETIC = {"train": 20, "test": 4}
POSITIONS = 256  # max_position_embeddings of the tiny models here


@pytest.fixture(scope="module")
def models(tiny_llama, tmp_path_factory) -> dict[str, str]:
    """A random tiny policy and a random tiny reward model, saved as a user's folders would be."""
    root = tmp_path_factory.mktemp("ppo-models")
    policy = tiny_llama.build(max_position_embeddings=POSITIONS)
    reward = tiny_llama.build(LlamaForTokenClassification, seed=1, num_labels=1, max_position_embeddings=POSITIONS)
    return {"policy": tiny_llama.save(policy, root / "policy"), "reward_model": tiny_llama.save(reward, root / "rm")}


def make_module(models, batch=None, sampling=None, **kwargs) -> PPOModule:
    """A PPO module on the tiny models: rollout 8, minibatch 4, 10 new tokens at temperature 1 (plus overrides)."""
    defaults = dict(log_rollouts=0, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))
    return PPOModule(
        policy=models["policy"], reward_model=models["reward_model"],
        batch=BatchSizes(**{"rollout": 8, "minibatch": 4, "ppo_epochs": 1, **(batch or {})}),
        sampling=Sampling(**{"max_new_tokens": 10, "temperature": 1.0, "top_k": 0, "budget_check": "warn", **(sampling or {})}),
        **{**defaults, **kwargs},
    )


class Recorder(Callback):
    """Per training step: the loss, the rollout number and position, and the prompts' ids."""

    def __init__(self):
        self.losses, self.batches, self.kl_coefs = {}, [], {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = outputs["loss"].item()
        self.batches.append((batch["rollout"], batch["position"], [r["unique_id"] for r in batch["records"]]))
        self.kl_coefs[trainer.global_step] = pl_module.kl_controller.value


def fit(module, datamodule, root, max_steps, ckpt_path=None, callbacks=(), **trainer_kwargs):
    recorder = Recorder()
    trainer = Trainer(accelerator="cpu", max_steps=max_steps, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=root,
                      callbacks=[recorder, *callbacks], **trainer_kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, recorder


# --- the rollout -------------------------------------------------------------------------------------------


def test_generation_is_seeded_per_rollout_and_log_probs_do_not_depend_on_padding(models):
    module = make_module(models)
    module.configure_model()
    prompts = ["# Question\n\n1+2\n\n# Solution\n\n", "# Question\n\n1+2+3-4+5\n\n# Solution\n\n"]
    state = torch.get_rng_state()
    ids, attention, p = module.generate_rollout(prompts, rollout_number=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    again, _, _ = module.generate_rollout(prompts, rollout_number=3)
    other, _, _ = module.generate_rollout(prompts, rollout_number=4)
    assert torch.equal(ids, again) and not torch.equal(ids, other)
    assert attention[0, :6].sum() == 0 and attention[0, 6] == 1  # the shorter prompt is left-padded
    width = ids.shape[1] - p
    batched = module._score_rollout_tokens(ids, attention, width)
    # the short prompt's row alone, without any padding, gives the same log-probs and values
    alone = attention[0].bool()
    single = module._score_rollout_tokens(ids[:1, alone], attention[:1, alone], int(alone[p:].sum()))
    n = int(alone[p:].sum())
    for key in ("old_logp", "ref_logp", "values", "rm_probs"):
        assert torch.allclose(batched[key][0, :n], single[key][0], atol=1e-5), key
    # at the start the reference is the policy
    assert torch.allclose(batched["old_logp"], batched["ref_logp"])


def test_generation_log_probs_match_the_sampling_distribution(models):
    module = make_module(models, sampling={"temperature": 0.7})
    module.configure_model()
    prompt = "# Question\n\n4+5\n\n# Solution\n\n"
    enc = module.tokenizer([prompt], return_tensors="pt")
    torch.manual_seed(0)
    out = module.policy.generate(**enc, do_sample=True, temperature=0.7, top_k=0, max_new_tokens=6, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=0, eos_token_id=2)
    scores = torch.stack(out.scores, dim=1)  # the processed (temperature-scaled) logits sampling used
    tokens = out.sequences[:, enc["input_ids"].shape[1]:]
    expected = torch.log_softmax(scores, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    ids, attention = out.sequences, torch.ones_like(out.sequences)
    got = module._score_rollout_tokens(ids, attention, tokens.shape[1])["old_logp"]
    assert torch.allclose(got, expected, atol=1e-5)


def test_rewards_sit_on_step_ends_and_eos_and_flow_into_the_returns(tmp_path, models, tiny_llama):
    """A hand-made response, a reward model that scores every token 0.3 and a zero value head: the returns
    are the hand-computed rewards-to-go."""
    rm = tiny_llama.build(LlamaForTokenClassification, seed=2, num_labels=1, max_position_embeddings=POSITIONS)
    with torch.no_grad():
        rm.score.weight.zero_()
        rm.score.bias.fill_(math.log(0.3 / 0.7))  # sigmoid = 0.3 everywhere
    rm_dir = tiny_llama.save(rm, tmp_path / "rm")
    module = PPOModule(policy=models["policy"], reward_model=rm_dir, value_model=models["policy"],
                       batch=BatchSizes(rollout=1, minibatch=1), rewards=Rewards(kl_coef=0.0, scale=False),
                       optimisation=Optimisation(whiten_advantages=False), log_rollouts=0)
    module.configure_model()
    tok = module.tokenizer
    prompt, response = "# Question\n\n1+2+4\n\n# Solution\n\n", "1+2=3 3+4\n\n3+4=7\n\n# Answer\n\n7"
    prompt_ids = tok(prompt)["input_ids"]
    ids = torch.tensor([prompt_ids + tok(response)["input_ids"] + [tok.eos_token_id]])
    module.generate_rollout = lambda prompts, number: (ids, torch.ones_like(ids), len(prompt_ids))

    parts = module.response_reward(ids[0, len(prompt_ids):].tolist(), True, torch.full((30,), 0.3), "7")
    # min shaping, bound 0.5, bonus 0.25 over 2 steps: 0.3 drops 0.2 below the bound at step 1, then stays
    assert parts.pairs == [(8, pytest.approx(-0.2 + 0.125)), (28, pytest.approx(0.125)), (29, 1.0)]
    assert (parts.outcome, parts.penalty, parts.correct) == (1.0, 0.0, 1.0)
    assert module.response_reward(ids[0, len(prompt_ids):].tolist(), True, torch.full((30,), 0.3), None).outcome == 0.25

    rollout = module.make_rollout([{"prompt": prompt, "answer": "7", "level": 2, "unique_id": "x"}], 0)
    expected = torch.tensor([1.05] * 9 + [1.125] * 20 + [1.0])
    assert rollout.mask.sum() == 30
    assert torch.allclose(rollout.returns[0], expected, atol=1e-6)
    assert torch.allclose(rollout.advantages[0], expected, atol=1e-6)  # the value head starts at 0


def test_an_infinite_k3_estimate_on_padding_leaves_the_sequence_kl_finite(models):
    """With the k3 estimator a padded position can hold inf (the policy and the reference rate the pad token
    very differently); the rollout's mean sequence KL, which the adaptive controller reads, must ignore it."""
    module = make_module(models, rewards=Rewards(kl_estimator="k3", kl_target=1.0))
    module.configure_model()
    tok = module.tokenizer
    prompt = "# Question\n\n1+2\n\n# Solution\n\n"
    prompt_ids = tok(prompt)["input_ids"]
    short, long = tok("3")["input_ids"] + [tok.eos_token_id], tok("1+2=3")["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([prompt_ids + short + [tok.pad_token_id] * (len(long) - len(short)), prompt_ids + long])
    module.generate_rollout = lambda prompts, number: (ids, torch.ones_like(ids), len(prompt_ids))
    real = module._score_rollout_tokens

    def scored(ids, attention, width):
        out = real(ids, attention, width)
        out["old_logp"][0, -1], out["ref_logp"][0, -1] = -100.0, -5.0  # row 0's last position is padding
        return out

    module._score_rollout_tokens = scored
    records = [{"prompt": prompt, "answer": "3", "level": 1, "unique_id": str(i)} for i in range(2)]
    rollout = module.make_rollout(records, 0)
    assert rollout.mask[0].tolist() == [True] * len(short) + [False] * (len(long) - len(short))
    assert math.isfinite(module.kl_controller.value)


def test_orm_and_format_penalty_are_added_at_the_last_token(models):
    module = make_module(models, rewards=Rewards(process=None, orm_weight=2.0, orm_center=0.5, outcome=False))
    tok = module.tokenizer
    ids = tok("1+2=3\n\n3")["input_ids"]  # no "# Answer" section: the answer "3" is not found either
    probs = torch.full((len(ids) + 1,), 0.5)
    probs[-1] = 0.8
    parts = module.response_reward(ids + [tok.eos_token_id], True, probs, "3")
    assert parts.pairs == [(len(ids), pytest.approx(2 * 0.3 - 1.0))]
    cut = module.response_reward(ids, False, probs[:-1], "3")  # no EOS: cut by the length limit
    assert cut.penalty == -1.0 and cut.pairs[-1][0] == len(ids) - 1


# --- training ------------------------------------------------------------------------------------------


def test_each_rollout_is_generated_once_and_its_micro_batches_cover_it(tmp_path, models, ppo_data):
    # rollout 8, minibatch 4, 2 epochs: K = 4 optimizer steps; 2 micro-batches each (accumulation): 8 batches
    module = make_module(models, batch={"ppo_epochs": 2})
    seen: list[tuple[int, int, list[int]]] = []
    original = module.micro_batch_indices

    def spy(number, position, size):
        index = original(number, position, size)
        seen.append((number, position, index.tolist()))
        return index

    module.micro_batch_indices = spy
    trainer, rec = fit(module, ppo_data(), tmp_path, max_steps=8, accumulate_grad_batches=2)
    assert module.steps_per_rollout == 4 and module.rollout_plan().batches_per_rollout == 8
    assert module.rollouts_made == 2 and trainer.global_step == 8
    assert [(r, p) for r, p, _ in rec.batches] == [(r, p) for r in (0, 1) for p in range(8)]
    for r in (0, 1):
        prompts = [ids for rr, _, ids in rec.batches if rr == r]
        assert all(ids == prompts[0] for ids in prompts) and len(prompts[0]) == 8
        for epoch in (0, 1):
            rows = [i for n, p, idx in seen if n == r and p // 4 == epoch for i in idx]
            assert sorted(rows) == list(range(8))  # each epoch trains on every response exactly once
    assert set(rec.batches[0][2]).isdisjoint(rec.batches[8][2])


def test_resume_at_a_rollout_boundary_gives_the_same_losses(tmp_path, models, ppo_data):
    kwargs = dict(rewards=Rewards(kl_target=0.5, kl_coef=0.2, kl_horizon=16))  # adaptive KL: its state is restored too
    _, straight = fit(make_module(models, **kwargs), ppo_data(), tmp_path / "a", max_steps=8)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="stop", every_n_train_steps=4, save_top_k=-1)
    _, first = fit(make_module(models, **kwargs), ppo_data(), tmp_path / "b", max_steps=4, callbacks=[saver])
    ckpt = torch.load(tmp_path / "ckpt" / "stop.ckpt", weights_only=False)
    assert not any(k.startswith(("reference.", "reward_model.")) for k in ckpt["state_dict"])  # frozen: not saved
    assert ckpt["ppo"]["kl_controller"]["value"] != 0.2  # the controller moved
    resumed_module = make_module(models, **kwargs)
    _, resumed = fit(resumed_module, ppo_data(), tmp_path / "b", max_steps=8,
                     ckpt_path=str(tmp_path / "ckpt" / "stop.ckpt"))
    assert sorted(first.losses) == [1, 2, 3, 4] and sorted(resumed.losses) == [5, 6, 7, 8]
    assert resumed_module.rollouts_made == 2 and [b[:2] for b in resumed.batches][0] == (2, 0)
    for step in range(1, 9):
        assert {**first.losses, **resumed.losses}[step] == pytest.approx(straight.losses[step], rel=1e-5, abs=1e-7), step
        assert {**first.kl_coefs, **resumed.kl_coefs}[step] == pytest.approx(straight.kl_coefs[step]), step
    assert len(set(straight.losses.values())) == 8  # the losses differ step to step: the comparison has teeth


def test_checkpoints_inside_a_rollout_are_refused(tmp_path, models, ppo_data):
    saver = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3)
    with pytest.raises(ValueError, match="use a multiple of 2"):
        fit(make_module(models), ppo_data(), tmp_path, max_steps=4, callbacks=[saver])


class Poison(Callback):
    """Makes one model's head output NaN from optimizer step `at` on."""

    def __init__(self, attribute: str, at: int):
        self.attribute, self.at = attribute, at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            with torch.no_grad():
                getattr(pl_module, self.attribute).score.bias.fill_(float("nan"))


@pytest.mark.parametrize("attribute, named", [("reward_model", "reward-model step score"), ("value", "rollout values")])
def test_non_finite_rewards_or_values_stop_before_the_optimizer_step(tmp_path, models, attribute, named, ppo_data):
    module = make_module(models)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    with pytest.raises(FloatingPointError, match=f"{named} is .*nan.* at step 2; stopping before the optimizer step"):
        fit(module, ppo_data(), tmp_path, max_steps=6, callbacks=[Poison(attribute, at=2), saver])
    (ckpt,) = list((tmp_path / "ckpt").glob("*.ckpt"))  # the last good checkpoint, and nothing after it
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert torch.load(ckpt, weights_only=False)["global_step"] == 2
    for key, value in module.policy.state_dict().items():  # the weights are those of the checkpoint
        assert torch.equal(state[f"policy.{key}"], value), key


def test_non_finite_loss_stops_before_the_optimizer_step(tmp_path, models, ppo_data):
    module = make_module(models)
    module.configure_model()
    before = {k: v.clone() for k, v in module.policy.state_dict().items()}

    class NaNLoss(Callback):  # a NaN advantage reaches the loss but not the rollout checks
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch["position"] == 1:
                pl_module._rollout.advantages.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="policy loss is nan at step 1"):
        fit(module, ppo_data(), tmp_path, max_steps=4, callbacks=[NaNLoss()])
    changed = [k for k, v in module.policy.state_dict().items() if not torch.equal(before[k], v)]
    assert changed  # step 1 (a good one) did update the weights ...
    after_first = {k: v.clone() for k, v in module.policy.state_dict().items()}
    assert all(torch.isfinite(v).all() for v in after_first.values())  # ... and the NaN step did not


def test_export_writes_the_trained_policy(tmp_path, models, ppo_data):
    module = make_module(models)
    trainer, _ = fit(module, ppo_data(), tmp_path, max_steps=2)
    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    assert main(["export", str(ckpt), str(tmp_path / "hf")]) == 0
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    start = AutoModelForCausalLM.from_pretrained(models["policy"])
    ids = torch.tensor([[5, 6, 7, 8]])
    module.policy.eval()
    assert torch.allclose(loaded(ids).logits, module.policy(ids).logits, atol=1e-5)
    assert not torch.allclose(loaded(ids).logits, start(ids).logits, atol=1e-5)  # it was trained


def test_validation_logs_greedy_accuracy_by_level_and_group(models, ppo_data):
    module = make_module(models, eval_max_new_tokens=6)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(module, datamodule=ppo_data())
    assert {"val/acc_all", "val/acc_easy", "val/acc_hard", "val/acc_level_1", "val/acc_level_4"} <= set(metrics)
    assert "val/acc_level_2" not in metrics


# --- GRPO: the same module, group-relative advantages, no value model ----------------------------------------


def make_grpo(models, group=4, **kwargs) -> PPOModule:
    """Rollout 8 = 2 prompts x `group` responses (when group is 4), minibatch 4, the KL as a loss term."""
    return make_module(models, batch={"group": group}, optimisation=Optimisation(advantage="group"),
                       rewards=Rewards(kl_coef=0.5, kl_estimator="k3", kl_clamp=None), **kwargs)


def test_grpo_samples_groups_and_gives_each_response_its_group_relative_advantage(tmp_path, models, ppo_data):
    module = make_grpo(models)
    rollouts, rewards = [], []
    make_rollout, response_reward = module.make_rollout, module.response_reward
    module.make_rollout = lambda records, number: rollouts.append((records, make_rollout(records, number))) or rollouts[-1][1]
    module.response_reward = lambda *a: rewards.append(response_reward(*a)) or rewards[-1]
    trainer, rec = fit(module, ppo_data(), tmp_path, max_steps=2)  # one rollout: 8 responses / minibatch 4

    records, rollout = rollouts[0]
    assert len(records) == 2 and len(rollout) == 8 and len(rewards) == 8  # 2 prompts, 4 responses each
    prompt_ids = rollout.input_ids[:, : rollout.prompt_width]
    for g in range(2):  # a group's responses answer the same prompt and sit side by side
        assert all(torch.equal(prompt_ids[4 * g], prompt_ids[4 * g + i]) for i in range(4))
    assert not torch.equal(prompt_ids[0], prompt_ids[4])
    # Expected, by hand from the task rewards: (R - group mean) / (group sample std), the same on every token.
    totals = torch.tensor([sum(r for _, r in p.pairs) for p in rewards], dtype=torch.float64).view(2, 4)
    for g in range(2):
        deviations = totals[g] - totals[g].mean()
        std = math.sqrt(float((deviations**2).sum()) / 3)
        expected = [0.0] * 4 if std == 0 else [float(d) / (std + 1e-6) for d in deviations]
        for i in range(4):
            row = rollout.advantages[4 * g + i][rollout.mask[4 * g + i]]
            assert row.tolist() == pytest.approx([expected[i]] * len(row), abs=1e-5)
    assert float(totals.std(dim=1).max()) > 0  # some group's responses differ, so the check above has teeth
    # No value model: no value weights, one parameter group, a KL loss term in the logs.
    assert module.value is None and rollout.old_values is None
    assert [g["name"] for g in trainer.optimizers[0].param_groups] == ["policy"]
    metrics = trainer.callback_metrics
    assert "train/loss/value" not in metrics and "train/value/explained_variance" not in metrics
    assert float(metrics["train/loss/total"]) == pytest.approx(
        float(metrics["train/loss/policy"]) + 0.5 * float(metrics["train/loss/kl"]), rel=1e-5, abs=1e-7)
    assert 0.0 <= float(metrics["train/rollout/groups_all_alike"]) <= 1.0
    ckpt = tmp_path / "grpo.ckpt"
    trainer.save_checkpoint(ckpt)
    assert not any(k.startswith("value.") for k in torch.load(ckpt, weights_only=False)["state_dict"])


def test_grpo_kl_loss_is_zero_at_the_start_and_grows_as_the_policy_moves(tmp_path, models, ppo_data):
    module = make_grpo(models, optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2))
    kls = []

    class KL(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            kls.append(float(trainer.callback_metrics["train/loss/kl"]))

    fit(module, ppo_data(), tmp_path, max_steps=4, callbacks=[KL()])
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # the first step: policy = reference, k3 = 0
    assert kls[-1] > 1e-4  # later steps train a policy that has moved


def test_grpo_resumes_at_a_rollout_boundary_with_the_same_losses(tmp_path, models, ppo_data):
    _, straight = fit(make_grpo(models), ppo_data(), tmp_path / "a", max_steps=4)
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="stop", every_n_train_steps=2, save_top_k=-1)
    _, first = fit(make_grpo(models), ppo_data(), tmp_path / "b", max_steps=2, callbacks=[saver])
    _, resumed = fit(make_grpo(models), ppo_data(), tmp_path / "b", max_steps=4,
                     ckpt_path=str(tmp_path / "ckpt" / "stop.ckpt"))
    assert sorted(resumed.losses) == [3, 4]
    for step in range(1, 5):
        assert {**first.losses, **resumed.losses}[step] == pytest.approx(straight.losses[step], rel=1e-5, abs=1e-7)
    assert len(set(straight.losses.values())) == 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch={"group": 4}), "only group-relative advantages use"),
    (dict(optimisation=Optimisation(advantage="group")), "set batch.group to 2 or more"),
    (dict(batch={"group": 4}, optimisation=Optimisation(advantage="group"), value_model="somewhere"),
     "has no value model"),
    (dict(batch={"group": 3}, optimisation=Optimisation(advantage="group")), "not a multiple of the group of 3"),
])
def test_grpo_settings_that_cannot_work_are_refused(models, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_module(models, **kwargs)


def test_grpo_stops_on_a_non_finite_loss_before_the_optimizer_step(tmp_path, models, ppo_data):
    module = make_grpo(models)

    class NaNAdvantages(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch["position"] == 1:
                pl_module._rollout.advantages.fill_(float("nan"))

    with pytest.raises(FloatingPointError, match="policy loss is nan at step 1"):
        fit(module, ppo_data(), tmp_path, max_steps=2, callbacks=[NaNAdvantages()])


# --- learning (slow: about a minute on 2 shared cores) --------------------------------------------------


def digit_reward_model(folder: Path, tiny_llama) -> str:
    """A reward model whose score at a token depends on that token only: 0.95 for a digit, 0.05 otherwise.

    One layer whose attention and MLP outputs are zeroed, so the final hidden state is the normalised token
    embedding; the embeddings are +-1 on one axis (digits +1) and the head reads that axis with weight
    3/sqrt(hidden): sigmoid(+-3).
    """
    tok = build_char_tokenizer()
    rm = tiny_llama.build(LlamaForTokenClassification, num_labels=1, num_hidden_layers=1, max_position_embeddings=POSITIONS)
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    with torch.no_grad():
        for layer in rm.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embedding = rm.model.embed_tokens.weight
        embedding.zero_()
        embedding[:, 0] = -1.0
        embedding[digits, 0] = 1.0
        rm.score.weight.zero_()
        rm.score.weight[0, 0] = 3.0 / rm.config.hidden_size**0.5
        rm.score.bias.zero_()
    return tiny_llama.save(rm, folder)


class RolloutMetrics(Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch["position"] == 0:
            m = trainer.callback_metrics
            self.rows.append({k: float(m[f"train/{k}"]) for k in ("reward/rm_score", "reward/process", "rollout/kl")})


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_ppo_raises_the_reward_model_score_with_bounded_kl(tmp_path, models, tiny_llama, ppo_data):
    """What this shows: the reward model's step scores, read at step ends and shaped by the "min" scheme, reach
    the policy through GAE and the clipped loss, and PPO moves the policy towards what the reward model
    rewards while the KL penalty keeps it near the reference.

    Set-up: a random tiny policy writes 6-token responses to synthetic prompts (no EOS, no blank line: one
    step whose end is the last token); the hand-made reward model scores a digit 0.95 and anything else 0.05;
    no outcome reward, no format penalty; KL coefficient 0.05 (k1, clamped).

    Measured (lr 1e-2, 12 rollouts of 32, 4 steps each; ~1 minute): the mean reward-model score of the step
    ends rose from near chance (10 digits among 99 characters) to 0.3-0.5 in the last three rollouts; the
    clamped-k1 KL per response rose to ~6 nats and stayed there. Over rollout sampling seeds 0-7: first rollout
    0.08-0.27 (6 of 8 below 0.2), last three 0.26-0.52 (7 of 8 at least 0.3), peak KL 4.4-7.9. The run here
    uses seed 4 (0.10, then 0.48; peak KL 6.3); with the seeds derived as before `stable_seed`, seed 0 drew
    0.08, then 0.36-0.61 (peak 6.2). The bound 0.3 is more than six binomial standard deviations above chance
    for 96 responses; the KL bound 12 is about twice the measured peaks (without the KL penalty the policy is
    free to collapse onto one character).
    """
    module = PPOModule(
        policy=models["policy"], reward_model=digit_reward_model(tmp_path / "rm", tiny_llama), value_model=models["policy"],
        batch=BatchSizes(rollout=32, minibatch=8),
        sampling=Sampling(max_new_tokens=6, temperature=1.0, top_k=0, seed=4, budget_check="warn"),
        rewards=Rewards(outcome=False, penalty_scale=0.0, kl_coef=0.05), log_rollouts=0,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-2),
    )
    metrics = RolloutMetrics()
    dm = ppo_data(train=ProblemSource(levels=[1, 2, 3], synthetic_per_level={"train": 100, "test": 4}))
    fit(module, dm, tmp_path, max_steps=48, callbacks=[metrics])
    scores = [row["reward/rm_score"] for row in metrics.rows]
    assert len(scores) == 12
    assert scores[0] < 0.2
    assert sum(scores[-3:]) / 3 >= 0.3, scores
    assert max(row["rollout/kl"] for row in metrics.rows) < 12.0


def test_final_answer_only_ppo_needs_no_reward_model(tmp_path, models, ppo_data):
    """The paper's baseline: the graded final answer is the whole task reward; the value model starts from
    the policy, and a process reward without a reward model is refused up front."""
    with pytest.raises(ValueError, match="rewards.process and rewards.orm_weight read a reward model"):
        PPOModule(policy=models["policy"], reward_model=None)
    module = PPOModule(policy=models["policy"], reward_model=None, rewards=Rewards(process=None),
                       batch=BatchSizes(rollout=8, minibatch=4), sampling=Sampling(max_new_tokens=10, budget_check="warn"), log_rollouts=0,
                       optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3))
    trainer, recorder = fit(module, ppo_data(), tmp_path, max_steps=2)
    assert module.reward_model is None and len(recorder.losses) == 2
    assert all(math.isfinite(v) for v in recorder.losses.values())
    # the rollout's clip rate by level (responses cut by the 10-token budget) is logged beside its rewards
    clip = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/rollout/clip_rate_")}
    assert clip and all(0.0 <= v <= 1.0 for v in clip.values())


def test_rollouts_shorter_than_the_reference_solutions_are_refused(tmp_path, models, ppo_data):
    module = PPOModule(policy=models["policy"], reward_model=None, rewards=Rewards(process=None),
                       batch=BatchSizes(rollout=8, minibatch=4), sampling=Sampling(max_new_tokens=10), log_rollouts=0)
    with pytest.raises(BudgetTooShort, match=r"sampling.max_new_tokens \(the train split\) = 10 tokens"):
        fit(module, ppo_data(), tmp_path, max_steps=2)


def test_rollouts_from_the_static_backend_train(tmp_path, models, monkeypatch, ppo_data):
    import e2h.generation.sampling as sampling_module  # PPO samples through generation's backend dispatch

    calls = []
    real = sampling_module.static_generate

    def counted(*args, **kwargs):
        calls.append(kwargs["max_new_tokens"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling_module, "static_generate", counted)
    module = make_module(models, sampling={"backend": "static"})
    _, recorder = fit(module, ppo_data(), tmp_path, max_steps=2)
    assert calls == [10]  # the rollout came from the static loop, once
    assert module.rollouts_made == 1 and all(math.isfinite(v) for v in recorder.losses.values())


def test_an_unknown_generation_backend_is_refused(models):
    with pytest.raises(ValueError, match="sampling.backend must be one of"):
        make_module(models, sampling={"backend": "vllm"})
