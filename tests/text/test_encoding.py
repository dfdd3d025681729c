"""Encoding: loss masks of SFT examples, prompt templates, and PRM/ORM label placement on steps' tokens, for
the char tokenizer and two trained BPE tokenizers."""

from __future__ import annotations

import pytest
import torch
from tokenizers import pre_tokenizers, processors

from e2h.data.errors import DataError
from e2h.data.step_solutions import StepSolution
from e2h.text.encoding import IGNORE_LABEL, PromptTooLongError, encode_prompt, encode_sft, encode_step_solution

PROMPT = "# Question\n\n1+2\n\n# Solution\n\n"  # 29 characters: 10 + 2 + 3 + 2 + 10 + 2


# ---------------------------------------------------------------------------------------------------------
# SFT encoding
# ---------------------------------------------------------------------------------------------------------


def test_the_ignored_label_is_the_one_pytorch_ignores():
    assert IGNORE_LABEL == torch.nn.CrossEntropyLoss().ignore_index == -100


def test_encode_sft_masks_exactly_the_prompt(char_id, char_tok):
    out = encode_sft(char_tok, "Q:1+1\n", "2 ok")
    # 6 prompt characters, 4 response characters, then EOS (id 2).
    expected_ids = [char_id(c) for c in "Q:1+1\n"] + [char_id(c) for c in "2 ok"] + [2]
    assert out["input_ids"] == expected_ids
    assert out["labels"] == [IGNORE_LABEL] * 6 + [char_id("2"), char_id(" "), char_id("o"), char_id("k"), 2]
    assert out["labels"][-1] == char_tok.eos_token_id
    assert out["truncated"] is False
    assert encode_sft(char_tok, "Q", "2", add_eos=False) == {
        "input_ids": [char_id("Q"), char_id("2")],
        "labels": [IGNORE_LABEL, char_id("2")],
        "truncated": False,
    }


def test_encode_sft_truncation(char_id, char_tok):
    # Prompt 6 tokens, response 4 + EOS; max_length 8 keeps 2 response tokens and drops the EOS.
    out = encode_sft(char_tok, "Q:1+1\n", "2 ok", max_length=8)
    assert out["input_ids"] == [char_id(c) for c in "Q:1+1\n2 "]
    assert out["labels"] == [IGNORE_LABEL] * 6 + [char_id("2"), char_id(" ")]
    assert out["truncated"] is True
    # Exactly fitting (11 tokens) is not truncated.
    assert encode_sft(char_tok, "Q:1+1\n", "2 ok", max_length=11)["truncated"] is False
    with pytest.raises(PromptTooLongError, match="rec-7.*6 tokens"):
        encode_sft(char_tok, "Q:1+1\n", "2 ok", max_length=6, where="rec-7")
    with pytest.raises(DataError, match="empty"):
        encode_sft(char_tok, "Q", "", add_eos=False)


def test_encode_prompt_keeps_a_template_bos_and_drops_a_template_eos(whitespace_tok, bpe):
    backend = bpe.train(pre_tokenizers.Whitespace(), bpe.lines)
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    # Llama style: the template puts BOS before the text.
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    llama_like = bpe.wrap(backend)
    plain = llama_like("The answer is", add_special_tokens=False)["input_ids"]
    assert encode_prompt(llama_like, "The answer is") == [bos, *plain]
    out = encode_sft(llama_like, "The answer is", "12.")
    response = llama_like("12.", add_special_tokens=False)["input_ids"]
    assert out["input_ids"] == [bos, *plain, *response, eos]
    assert out["labels"] == [IGNORE_LABEL] * (1 + len(plain)) + [*response, eos]

    # A template that also appends EOS: the prompt must not end with it.
    backend2 = bpe.train(pre_tokenizers.Whitespace(), bpe.lines)
    backend2.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    assert encode_prompt(bpe.wrap(backend2), "The answer is") == [bos, *plain]
    # No template (the BPE as trained): nothing added.
    assert encode_prompt(whitespace_tok, "The answer is") == plain


# ---------------------------------------------------------------------------------------------------------
# Step label placement
# ---------------------------------------------------------------------------------------------------------

SOLUTION = StepSolution(problem="1+2", steps=("1+2=3", "3"), labels=(1, 0), outcome=1, unique_id="math/1")


def test_step_labels_on_char_tokenizer(char_id, char_tok):
    enc = encode_step_solution(char_tok, PROMPT, SOLUTION)
    # Prompt: positions 0..28. "1+2=3": 29..33, "\n\n": 34..35, "3": 36, EOS: 37.
    assert enc.input_ids == [char_id(c) for c in PROMPT + "1+2=3\n\n3"] + [2]
    assert enc.prompt_length == 29
    assert enc.step_end_positions == [33, 36]
    assert enc.input_ids[33] == char_id("3") and enc.input_ids[36] == char_id("3")
    expected = [IGNORE_LABEL] * 38
    expected[33], expected[36] = 1.0, 0.0
    assert enc.step_labels == expected
    assert enc.outcome_position == 37 and enc.input_ids[37] == char_tok.eos_token_id
    assert enc.outcome_label == 1
    assert enc.outcome_labels == [IGNORE_LABEL] * 37 + [1.0]
    assert enc.truncated is False


def test_label_all_step_tokens(char_tok):
    enc = encode_step_solution(char_tok, PROMPT, SOLUTION, label_all_step_tokens=True)
    expected = [IGNORE_LABEL] * 38
    for k in range(29, 34):  # every token of "1+2=3"
        expected[k] = 1.0
    expected[36] = 0.0  # "3"; the separator tokens 34, 35 stay ignored
    assert enc.step_labels == expected


def test_unlabelled_steps_and_missing_outcome(char_tok):
    sol = StepSolution(problem="1+2", steps=("1+2=3", "3"), labels=(None, 0), outcome=None, unique_id="u")
    enc = encode_step_solution(char_tok, PROMPT, sol, add_eos=False)
    assert enc.step_end_positions == [33, 36]  # unlabelled steps still get an end position for scoring
    assert [k for k, v in enumerate(enc.step_labels) if v != IGNORE_LABEL] == [36]
    assert enc.outcome_position == 36 and enc.outcome_label is None
    assert enc.outcome_labels == [IGNORE_LABEL] * 37


@pytest.mark.parametrize("tok_name", ["bytelevel_tok", "whitespace_tok"])
def test_step_ends_land_on_the_token_holding_the_last_character(tok_name, request):
    tok = request.getfixturevalue(tok_name)
    steps = ("5+4=9 so the total", "we add 11 to get 20.", "The answer is 20")
    sol = StepSolution(problem="5+4+11", steps=steps, labels=(1, 1, 0), outcome=1, unique_id="bpe")
    prompt = "Compute 5+4+11.\n\n"
    enc = encode_step_solution(tok, prompt, sol)
    response = "\n\n".join(steps)
    resp = tok(response, add_special_tokens=False, return_offsets_mapping=True)
    n_prompt = len(encode_prompt(tok, prompt))
    assert enc.prompt_length == n_prompt
    assert enc.input_ids == encode_prompt(tok, prompt) + resp["input_ids"] + [tok.eos_token_id]
    offsets = resp["offset_mapping"]
    multi_char_end = False
    step_end_char = 0
    for i, step in enumerate(steps):
        step_end_char += len(step)
        end = enc.step_end_positions[i]
        k = end - n_prompt
        start_off, end_off = offsets[k]
        # The end token covers the step's last character ...
        assert start_off <= step_end_char - 1 < end_off
        assert step[-1] in tok.decode([enc.input_ids[end]])
        # ... and the next token starts at or after the step's end.
        if k + 1 < len(offsets):
            assert offsets[k + 1][0] >= step_end_char
        multi_char_end |= end_off - start_off > 1
        assert enc.step_labels[end] == float(sol.labels[i])
        step_end_char += 2  # the separator
    assert multi_char_end, "the trained BPE should merge at least one step end into a multi-character token"
    assert sum(v != IGNORE_LABEL for v in enc.step_labels) == 3
    assert enc.outcome_position == len(enc.input_ids) - 1 and enc.outcome_labels[-1] == 1.0


def test_labelled_step_without_tokens_raises(char_tok):
    empty = StepSolution(problem="p", steps=("1+2=3", ""), labels=(1, 0), unique_id="rec-empty")
    with pytest.raises(DataError, match=r"rec-empty.*step 1 maps to no token"):
        encode_step_solution(char_tok, PROMPT, empty)
    # An empty unlabelled step is no better: its end position would be meaningless.
    empty_unlabelled = StepSolution(problem="p", steps=("", "3"), labels=(None, 1), unique_id="rec-e2")
    with pytest.raises(DataError, match=r"rec-e2.*step 0 maps to no token"):
        encode_step_solution(char_tok, PROMPT, empty_unlabelled)


def test_truncated_steps(char_id, char_tok):
    # 29 prompt + 5 tokens of "1+2=3" + "\n" (34): step 1 ("3", response token 7) is cut.
    with pytest.raises(DataError, match=r"math/1.*labelled step 1.*max_length=35"):
        encode_step_solution(char_tok, PROMPT, SOLUTION, max_length=35)
    # A step cut in the middle is an error too: its label would sit before the step's end.
    long_step = StepSolution(problem="p", steps=("1+2=3 and more",), labels=(1,), unique_id="cut")
    with pytest.raises(DataError, match=r"cut.*labelled step 0"):
        encode_step_solution(char_tok, PROMPT, long_step, max_length=33)
    # Unlabelled steps may be truncated away: they get end position -1.
    sol = StepSolution(problem="p", steps=("1+2=3", "3", "4"), labels=(1, None, None), unique_id="ok")
    enc = encode_step_solution(char_tok, PROMPT, sol, max_length=36)
    assert enc.input_ids == [char_id(c) for c in PROMPT + "1+2=3\n\n"]
    assert enc.step_end_positions == [33, -1, -1]
    assert enc.truncated is True
    assert enc.step_labels[33] == 1.0 and enc.outcome_position == 35
    # An outcome label needs the final token.
    with pytest.raises(DataError, match=r"math/1.*outcome"):
        encode_step_solution(char_tok, PROMPT, SOLUTION, max_length=37)  # only the EOS is cut
    with pytest.raises(PromptTooLongError, match="math/1"):
        encode_step_solution(char_tok, PROMPT, SOLUTION, max_length=29)


def test_two_labelled_steps_on_one_token_raise(bpe):
    # A BPE trained without a pre-tokenizer merges "a\n\nb" into one token: both steps end on it.
    tok = bpe.wrap(bpe.train(None, ["a\n\nb"] * 50, vocab_size=20))
    assert len(tok("a\n\nb", add_special_tokens=False)["input_ids"]) == 1
    sol = StepSolution(problem="p", steps=("a", "b"), labels=(1, 0), unique_id="shared")
    with pytest.raises(DataError, match=r"shared.*steps 0 and 1 end on the same token"):
        encode_step_solution(tok, "Q\n\n", sol)
    # With one of them unlabelled the placement is unambiguous.
    ok = encode_step_solution(tok, "Q\n\n", StepSolution(problem="p", steps=("a", "b"), labels=(None, 0)))
    assert ok.step_end_positions[0] == ok.step_end_positions[1]
