"""PPO's prompts: hard levels hide their answers in training and keep them in validation."""

from e2h.datamodules import ProblemSource
from e2h.datamodules.ppo import PPOPromptsDataModule, hide_answers

SMALL_SYNTHETIC = {"train": 20, "test": 4}


def make_datamodule(**kwargs) -> PPOPromptsDataModule:
    defaults = dict(
        train=ProblemSource(levels=[1, 2, 3, 4, 5], synthetic_per_level=SMALL_SYNTHETIC),
        val=ProblemSource(split="test", levels=[1, 4], synthetic_per_level=SMALL_SYNTHETIC),
        hide_answers_for_levels=[4, 5],
        eval_batch_size=8,
    )
    return PPOPromptsDataModule(**{**defaults, **kwargs})


def test_training_prompts_of_hard_levels_hide_their_answers():
    records = [{"level": 1, "answer": "3"}, {"level": 4, "answer": "5"}, {"level": 5, "answer": "6"}]
    assert [r["answer"] for r in hide_answers(records, [4, 5])] == ["3", None, None]
    assert records[1]["answer"] == "5"  # the input is not modified
    dm = make_datamodule(tokenizer="char")
    dm.setup("fit")
    train, val = dm.ppo_records("train"), dm.ppo_records("val")
    assert {r["level"] for r in train} == {1, 2, 3, 4, 5}
    assert all((r["answer"] is None) == (r["level"] in (4, 5)) for r in train)
    assert all(r["answer"] is not None for r in val) and {r["level"] for r in val} == {1, 4}
