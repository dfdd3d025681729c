"""The generator's data: few-shot prompts hold exemplars from the chosen levels only, never an evaluated problem."""

import pytest

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


def test_sft_examples_cut_by_max_length_are_warned_about_by_level(problems_data):
    # char tokenizer: prompt "# Question\n\n" + problem + "\n\n# Solution\n\n" is 26 + 2L+3 characters, the
    # solution with its EOS 30 (level 1) or 43 (level 2): 61 and 76 tokens, so 70 cuts every level-2 example only
    dm = problems_data(max_length=70)
    with pytest.warns(UserWarning, match=r"level 2: 100 of 100 \(100%\), longest 76 tokens") as record:
        dm.setup("fit")
    assert not any("level 1:" in str(w.message) for w in record)  # level 1 fits
    assert dm.reference_lengths("val")[5] == [94] * 10  # the level-5 solution with its EOS, what a budget must fit


def test_a_prompt_too_long_for_max_length_names_the_problem(problems_data):
    from e2h.text.encoding import PromptTooLongError

    dm = problems_data(max_length=20)  # every prompt is longer (26 characters of headings alone)
    with pytest.raises(PromptTooLongError, match=r"train problem synthetic/L1/train/0 \(level 1\)"):
        dm.setup("fit")
