"""Step-to-token alignment: the last token of each step a reward model scores, in a response as generated."""

from e2h.text.alignment import step_end_tokens, token_char_offsets
from e2h.text.tokenizer import build_char_tokenizer


def test_step_ends_are_the_last_token_of_each_step_with_the_answer_on_the_last_step():
    tok = build_char_tokenizer()
    text = "1+2=3 3+4\n\n3+4=7\n\n# Answer\n\n7"
    decoded, offsets = token_char_offsets(tok, tok(text, add_special_tokens=False)["input_ids"])
    assert decoded == text and offsets[:3] == [(0, 1), (1, 2), (2, 3)]
    assert step_end_tokens(text, offsets) == [8, len(text) - 1]
    # blank chunks (extra blank lines) are not steps; an empty response has none
    assert step_end_tokens("1+2=3\n\n\n\n3+4=7", [(i, i + 1) for i in range(14)]) == [4, 13]
    assert step_end_tokens("", []) == []
