"""The generator's data: few-shot prompts hold exemplars from the chosen levels only, never an evaluated problem."""

from e2h.datamodules import FewShot, ProblemsDataModule, ProblemSource

SMALL_SYNTHETIC = {"train": 100, "test": 10}


def make_datamodule(**kwargs) -> ProblemsDataModule:
    defaults = dict(
        train=ProblemSource(split="train", levels=[1, 2], synthetic_per_level=SMALL_SYNTHETIC),
        val=ProblemSource(split="test", levels=[1, 2, 3, 4, 5], synthetic_per_level=SMALL_SYNTHETIC),
        max_length=96,
        batch_size=8,
        eval_batch_size=25,
        tokenizer="char",
    )
    defaults.update(kwargs)
    return ProblemsDataModule(**defaults)


def test_icl_prompts_hold_exemplars_from_the_chosen_levels_only():
    dm = make_datamodule(
        val=ProblemSource(split="test", levels=[4, 5], synthetic_per_level=SMALL_SYNTHETIC),
        few_shot=FewShot(k=3, levels=[1], pool=ProblemSource(split="train", synthetic_per_level=SMALL_SYNTHETIC)),
    )
    dm.setup("validate")
    records = dm.prompt_records("val")
    assert all(r["prompt"].count("# Question") == 4 for r in records)
    assert all(e.level == 1 for e in dm.prompt.exemplars)
    evaluated = {r["problem"] for r in records}
    assert not evaluated & {e.problem for e in dm.prompt.exemplars}
