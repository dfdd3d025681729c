"""The resumable samplers: PPO's rollout batches repeat each rollout and split it over ranks; resuming skips what
was trained on."""

from e2h.datamodules.sampler import RolloutBatchSampler
from e2h.rl.rollout import RolloutPlan


def test_rollout_sampler_repeats_each_rollout_and_splits_it_over_ranks():
    # 2 devices, 2 prompts each: a rollout of 4; minibatch 4 over 3 PPO epochs: 3 loader batches per rollout
    plan = RolloutPlan(rollout=4, minibatch=4, ppo_epochs=3, world=2)
    assert (plan.prompts_per_rollout, plan.batches_per_rollout) == (2, 3)
    sampler = RolloutBatchSampler(10, plan, seed=0, rank=0)
    other = RolloutBatchSampler(10, plan, seed=0, rank=1)
    batches, others = list(sampler), list(other)
    assert len(batches) == len(sampler) == 2 * 3  # 10 // (2 x 2) = 2 rollouts, each 3 times
    assert [(b[0][1], b[0][2]) for b in batches] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert batches[0] == [(i, 0, 0) for i, _, _ in batches[0]] and [i for i, _, _ in batches[1]] == [i for i, _, _ in batches[0]]
    seen = [i for b, o in zip(batches[::3], others[::3]) for i, _, _ in b + o]
    assert len(seen) == len(set(seen)) == 8  # the ranks share no prompt
    sampler.set_epoch(1)
    assert [b[0][1] for b in sampler] == [2, 2, 2, 3, 3, 3]  # rollouts are counted across epochs
    sampler.skip(1, 3)
    assert len(sampler) == 3 and [b[0][1:] for b in sampler] == [(3, 0), (3, 1), (3, 2)]
