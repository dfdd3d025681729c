"""Reinforcement learning, framework-free: PPO maths (`maths`), the KL penalty and its controllers (`kl`), and
the reward shaping from grades and reward-model scores (`rewards`)."""
