"""The generator's data: few-shot prompts hold exemplars from the chosen levels only, never an evaluated problem."""

from e2h.datamodules import FewShot, ProblemSource

SMALL_SYNTHETIC = {"train": 100, "test": 10}


def test_icl_prompts_hold_exemplars_from_the_chosen_levels_only(problems_data):
    dm = problems_data(
        val=ProblemSource(split="test", levels=[4, 5], synthetic_per_level=SMALL_SYNTHETIC),
        few_shot=FewShot(k=3, levels=[1], pool=ProblemSource(split="train", synthetic_per_level=SMALL_SYNTHETIC)),
    )
    dm.setup("validate")
    records = dm.prompt_records("val")
    assert all(r["prompt"].count("# Question") == 4 for r in records)
    assert all(e.level == 1 for e in dm.prompt.exemplars)
    evaluated = {r["problem"] for r in records}
    assert not evaluated & {e.problem for e in dm.prompt.exemplars}
