"""MetaMathQA in the step format, kept only for the chosen MATH problems."""

from e2h.data.metamath import metamath_to_problems, split_metamath_response
from e2h.data.records import Problem


def test_metamath_rewrite_keeps_only_items_of_the_chosen_math_problems():
    easy = [Problem("What is  $1+1$?", "s", "2", 1, "Algebra", "m1")]
    rows = [
        {"query": "Compute 1+1.", "response": "We add.\n1+1=2.\nThe answer is: 2", "type": "MATH_Rephrased",
         "original_question": "What is $1+1$?"},
        {"query": "Hard one", "response": "x\nThe answer is: 5", "type": "MATH_SV", "original_question": "Other"},
        {"query": "Apples?", "response": "3+4=7\nThe answer is: 7", "type": "GSM_AnsAug", "original_question": "A"},
    ]
    (kept,) = metamath_to_problems(rows, easy)
    assert kept.problem == "Compute 1+1." and kept.solution == "We add.\n\n1+1=2." and kept.answer == "2"
    assert kept.level == 1
    assert len(metamath_to_problems(rows, easy, keep_gsm=True)) == 2
    assert split_metamath_response("a\n\nb\nThe answer is: \\frac{1}{2}") == (["a", "b"], "\\frac{1}{2}")
