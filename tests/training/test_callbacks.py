"""The samples writer's notion of a finished problem: every sample index present."""

from e2h.training.callbacks import complete_problems


def test_complete_problems_needs_every_sample_index():
    rows = [{"problem_id": "a", "sample_index": i} for i in range(3)] + [{"problem_id": "b", "sample_index": 0}]
    assert complete_problems(rows, 3) == {"a"}
    assert complete_problems(rows, 1) == {"a", "b"}
