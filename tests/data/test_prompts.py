import pytest

from e2h.data.errors import DataError
from e2h.data.few_shot import FewShotPrompt, draw_exemplars
from e2h.data.prompts import EXEMPLAR_SEPARATOR, PromptFormat, question_from_prompt
from e2h.data.records import Problem


def problem(i, level, solution="Add.\n\nSo $\\boxed{3}$.", answer="3"):
    return Problem(f"Q{i}", solution, answer, level, "Algebra", f"id{i}")


def test_paper_format_matches_the_official_text():
    fmt = PromptFormat()
    assert fmt.prompt("What is 1+2?") == "# Question\n\nWhat is 1+2?\n\n# Solution\n\n"
    rec = problem(0, 1, solution="1+2=3\n\n", answer="3")
    assert fmt.response(rec) == "1+2=3\n\n# Answer\n\n3"


def test_boxed_format_keeps_a_boxed_solution_and_adds_one_otherwise():
    fmt = PromptFormat("boxed")
    assert "\\boxed{}" in fmt.prompt("Q")
    assert fmt.response(problem(0, 1)) == "Add.\n\nSo $\\boxed{3}$."
    assert fmt.response(problem(0, 1, solution="1+2=3", answer="3")).endswith("$\\boxed{3}$.")


def test_unknown_format_is_an_error():
    with pytest.raises(ValueError, match="unknown prompt format 'chat'"):
        PromptFormat("chat")


def test_exemplars_come_from_the_chosen_levels_with_a_seed():
    pool = [problem(i, 1 + i % 5) for i in range(50)]
    easy = draw_exemplars(pool, 4, levels=[1, 2, 3], seed=0)
    assert len(easy) == 4 and all(p.level in (1, 2, 3) for p in easy)
    assert draw_exemplars(pool, 4, levels=[1, 2, 3], seed=0) == easy
    assert draw_exemplars(pool, 4, levels=[1, 2, 3], seed=1) != easy
    hard = draw_exemplars(pool, 4, levels=[4, 5], seed=0)
    assert all(p.level in (4, 5) for p in hard)


def test_exemplars_never_include_the_evaluated_problems():
    pool = [problem(i, 1) for i in range(6)]
    evaluated = pool[:4]
    drawn = draw_exemplars(pool, 2, seed=3, exclude=evaluated)
    assert {p.unique_id for p in drawn} == {"id4", "id5"}
    with pytest.raises(DataError, match="need 3 exemplars from levels any, the pool has 2"):
        draw_exemplars(pool, 3, exclude=evaluated)


def test_few_shot_prompt_puts_solved_exemplars_before_the_question():
    shots = (problem(1, 1, "1+2=3", "3"), problem(2, 2, "2+2=4", "4"))
    prompt = FewShotPrompt(shots)("Q9")
    assert prompt == (
        "# Question\n\nQ1\n\n# Solution\n\n1+2=3\n\n# Answer\n\n3" + EXEMPLAR_SEPARATOR
        + "# Question\n\nQ2\n\n# Solution\n\n2+2=4\n\n# Answer\n\n4" + EXEMPLAR_SEPARATOR
        + "# Question\n\nQ9\n\n# Solution\n\n"
    )


def test_question_from_prompt_takes_the_last_question():
    assert question_from_prompt("# Question\n\na\n\n# Solution\n\nx\n\n\n# Question\n\nb+c\n\n# Solution\n\n") == "b+c"
    assert question_from_prompt("Solve 1+2 and put it in \\boxed{}") is None
