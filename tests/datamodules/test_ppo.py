"""PPO's prompts: hard levels hide their answers in training and keep them in validation."""

from e2h.datamodules.ppo import hide_answers


def test_training_prompts_of_hard_levels_hide_their_answers(ppo_data):
    records = [{"level": 1, "answer": "3"}, {"level": 4, "answer": "5"}, {"level": 5, "answer": "6"}]
    assert [r["answer"] for r in hide_answers(records, [4, 5])] == ["3", None, None]
    assert records[1]["answer"] == "5"  # the input is not modified
    dm = ppo_data(tokenizer="char")
    dm.setup("fit")
    train, val = dm.ppo_records("train"), dm.ppo_records("val")
    assert {r["level"] for r in train} == {1, 2, 3, 4, 5}
    assert all((r["answer"] is None) == (r["level"] in (4, 5)) for r in train)
    assert all(r["answer"] is not None for r in val) and {r["level"] for r in val} == {1, 4}
