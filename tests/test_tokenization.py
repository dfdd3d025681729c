"""Tokenizers, loss masks, PRM/ORM label placement, packing, collation and the packed attention mask."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from e2h.data.errors import DataError
from e2h.data.step_solutions import StepSolution
from e2h.text.encoding import IGNORE_LABEL, PromptTooLongError, encode_prompt, encode_sft, encode_step_solution
from e2h.text.packing import block_causal_mask, collate_padded, first_fit_rows, pack_sequences, padding_waste
from e2h.text.tokenizer import DEFAULT_ALPHABET, build_char_tokenizer, load_tokenizer

PROMPT = "# Question\n\n1+2\n\n# Solution\n\n"  # 29 characters: 10 + 2 + 3 + 2 + 10 + 2


def char_id(c: str) -> int:
    # The char tokenizer's ids: 4 special tokens, then the alphabet in order.
    return 4 + DEFAULT_ALPHABET.index(c)


@pytest.fixture(scope="module")
def char_tok() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


TRAINING_LINES = [
    f"{a}+{b}={a + b} so the total is {a + b} and we add {c} to get {a + b + c}."
    for a in range(3, 9)
    for b in range(2, 7)
    for c in (4, 11)
] + ["The answer is 12.", "We compute the sum step by step.", "Therefore the result is 37."]


def train_bpe(pre_tokenizer: pre_tokenizers.PreTokenizer | None, lines: list[str], vocab_size: int = 300) -> Tokenizer:
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    alphabet: list[str] = []
    if isinstance(pre_tokenizer, pre_tokenizers.ByteLevel):
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        backend.decoder = decoders.ByteLevel()
    if pre_tokenizer is not None:
        backend.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet)
    backend.train_from_iterator(lines, trainer)
    return backend


def wrap(backend: Tokenizer, **kwargs) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", **kwargs
    )


@pytest.fixture(scope="module")
def bytelevel_tok() -> PreTrainedTokenizerFast:
    return wrap(train_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), TRAINING_LINES), pad_token="<pad>")


@pytest.fixture(scope="module")
def whitespace_tok() -> PreTrainedTokenizerFast:
    return wrap(train_bpe(pre_tokenizers.Whitespace(), TRAINING_LINES), pad_token="<pad>")


# ---------------------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------------------


def test_char_tokenizer_round_trip_offsets_and_save_load(char_tok, tmp_path):
    text = "# Q\n\n a <s> b </s>  ~\n"
    enc = char_tok(text, return_offsets_mapping=True)
    # One token per character, special-token spellings included, and nothing added around the text.
    assert enc["input_ids"] == [char_id(c) for c in text]
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(text))]
    assert char_tok.decode(enc["input_ids"]) == text
    assert char_tok(text, add_special_tokens=True)["input_ids"] == enc["input_ids"]
    assert (char_tok.pad_token_id, char_tok.bos_token_id, char_tok.eos_token_id, char_tok.unk_token_id) == (0, 1, 2, 3)
    assert len(char_tok) == 4 + 96
    assert char_tok("é")["input_ids"] == [3]
    assert char_tok.decode([1, char_id("x"), 2], skip_special_tokens=True) == "x"

    char_tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.get_vocab() == char_tok.get_vocab()
    assert reloaded(text, return_offsets_mapping=True)["offset_mapping"] == enc["offset_mapping"]
    assert reloaded(text)["input_ids"] == enc["input_ids"]
    assert reloaded.decode(enc["input_ids"]) == text
    assert (reloaded.pad_token_id, reloaded.bos_token_id, reloaded.eos_token_id) == (0, 1, 2)
    assert reloaded.padding_side == "right"


def test_load_tokenizer_char_and_pad_fallback(tmp_path):
    char = load_tokenizer("char")
    assert char.pad_token == "<pad>" and char.padding_side == "right"

    no_pad = wrap(train_bpe(pre_tokenizers.Whitespace(), TRAINING_LINES[:10], vocab_size=80), padding_side="left")
    assert no_pad.pad_token is None
    no_pad.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == "</s>" and loaded.pad_token_id == loaded.eos_token_id
    assert loaded.padding_side == "right"


# ---------------------------------------------------------------------------------------------------------
# SFT encoding
# ---------------------------------------------------------------------------------------------------------


def test_the_ignored_label_is_the_one_pytorch_ignores():
    assert IGNORE_LABEL == torch.nn.CrossEntropyLoss().ignore_index == -100


def test_encode_sft_masks_exactly_the_prompt(char_tok):
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


def test_encode_sft_truncation(char_tok):
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


def test_encode_prompt_keeps_a_template_bos_and_drops_a_template_eos(whitespace_tok):
    backend = train_bpe(pre_tokenizers.Whitespace(), TRAINING_LINES)
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    # Llama style: the template puts BOS before the text.
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    llama_like = wrap(backend)
    plain = llama_like("The answer is", add_special_tokens=False)["input_ids"]
    assert encode_prompt(llama_like, "The answer is") == [bos, *plain]
    out = encode_sft(llama_like, "The answer is", "12.")
    response = llama_like("12.", add_special_tokens=False)["input_ids"]
    assert out["input_ids"] == [bos, *plain, *response, eos]
    assert out["labels"] == [IGNORE_LABEL] * (1 + len(plain)) + [*response, eos]

    # A template that also appends EOS: the prompt must not end with it.
    backend2 = train_bpe(pre_tokenizers.Whitespace(), TRAINING_LINES)
    backend2.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    assert encode_prompt(wrap(backend2), "The answer is") == [bos, *plain]
    # No template (the BPE as trained): nothing added.
    assert encode_prompt(whitespace_tok, "The answer is") == plain


# ---------------------------------------------------------------------------------------------------------
# Step label placement
# ---------------------------------------------------------------------------------------------------------

SOLUTION = StepSolution(problem="1+2", steps=("1+2=3", "3"), labels=(1, 0), outcome=1, unique_id="math/1")


def test_step_labels_on_char_tokenizer(char_tok):
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


def test_truncated_steps(char_tok):
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


def test_two_labelled_steps_on_one_token_raise():
    # A BPE trained without a pre-tokenizer merges "a\n\nb" into one token: both steps end on it.
    tok = wrap(train_bpe(None, ["a\n\nb"] * 50, vocab_size=20))
    assert len(tok("a\n\nb", add_special_tokens=False)["input_ids"]) == 1
    sol = StepSolution(problem="p", steps=("a", "b"), labels=(1, 0), unique_id="shared")
    with pytest.raises(DataError, match=r"shared.*steps 0 and 1 end on the same token"):
        encode_step_solution(tok, "Q\n\n", sol)
    # With one of them unlabelled the placement is unambiguous.
    ok = encode_step_solution(tok, "Q\n\n", StepSolution(problem="p", steps=("a", "b"), labels=(None, 0)))
    assert ok.step_end_positions[0] == ok.step_end_positions[1]


# ---------------------------------------------------------------------------------------------------------
# Packing, collation, masks, padding waste
# ---------------------------------------------------------------------------------------------------------


def test_first_fit_rows():
    # 4->r0(4), 4->r1(4), 2->r2(2), 3->r2(5), 1->r0(5).
    assert first_fit_rows([4, 4, 2, 3, 1], 5) == [[0, 4], [1], [2, 3]]
    assert first_fit_rows([], 5) == []
    with pytest.raises(ValueError, match="item 1 has length 6"):
        first_fit_rows([1, 6], 5)


def test_pack_sequences():
    examples = [
        {"input_ids": [1, 2, 3], "labels": [IGNORE_LABEL, 2, 3], "truncated": False},
        {"input_ids": [4, 5], "labels": [4, 5], "truncated": True},
        {"input_ids": [6, 7, 8, 9], "labels": [IGNORE_LABEL, IGNORE_LABEL, 8, 9], "truncated": False},
        {"input_ids": [10], "labels": [10], "truncated": False},
    ]
    rows = pack_sequences(examples, 5)
    assert rows == [
        {
            "input_ids": [1, 2, 3, 4, 5],
            # The first label of each example is dropped: the shifted loss would predict it from the previous one.
            "labels": [IGNORE_LABEL, 2, 3, IGNORE_LABEL, 5],
            "position_ids": [0, 1, 2, 0, 1],
            "sequence_ids": [0, 0, 0, 1, 1],
        },
        {
            "input_ids": [6, 7, 8, 9, 10],
            "labels": [IGNORE_LABEL, IGNORE_LABEL, 8, 9, IGNORE_LABEL],
            "position_ids": [0, 1, 2, 3, 0],
            "sequence_ids": [0, 0, 0, 0, 1],
        },
    ]
    with pytest.raises(ValueError, match="item 2 has length 4"):
        pack_sequences(examples, 3)
    with pytest.raises(DataError, match="step_end_positions"):
        pack_sequences([{"input_ids": [1, 2, 3], "step_end_positions": [2]}], 5)
    only_ids = pack_sequences([{"input_ids": [1, 2, 3], "step_end_positions": [2]}], 5, keys=["input_ids"])
    assert only_ids == [{"input_ids": [1, 2, 3], "position_ids": [0, 1, 2], "sequence_ids": [0, 0, 0]}]


def test_collate_padded():
    rows = [
        {"input_ids": [5, 6, 7], "labels": [IGNORE_LABEL, 6, 7], "step_labels": [IGNORE_LABEL, 1.0, 0.0], "uid": "a"},
        {"input_ids": [8], "labels": [8], "step_labels": [1.0], "uid": "b"},
    ]
    batch = collate_padded(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE_LABEL, 6, 7], [8, IGNORE_LABEL, IGNORE_LABEL]]
    assert batch["step_labels"].dtype == torch.float32
    assert batch["step_labels"].tolist() == [[IGNORE_LABEL, 1.0, 0.0], [1.0, IGNORE_LABEL, IGNORE_LABEL]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 0, 0]]
    assert batch["sequence_ids"].tolist() == [[0, 0, 0], [0, -1, -1]]
    assert batch["input_ids"].dtype == torch.long
    assert batch["uid"] == ["a", "b"]
    assert collate_padded(rows, pad_id=0, pad_to_multiple_of=4)["input_ids"].shape == (2, 4)


def test_block_causal_mask_values():
    seq = torch.tensor([[0, 0, 1, -1]])
    allowed = [
        [True, False, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, False, True],  # padding: itself only
    ]
    assert block_causal_mask(seq, torch.bool).tolist() == [[allowed]]
    additive = block_causal_mask(seq, torch.float32)
    assert additive.shape == (1, 1, 4, 4)
    low = torch.finfo(torch.float32).min
    assert additive[0, 0].tolist() == [[0.0 if a else low for a in row] for row in allowed]


def _tiny_llama(vocab_size: int, attn: str) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_row_matches_examples_run_alone(char_tok, attn):
    model = _tiny_llama(len(char_tok), attn)
    pairs = [("Q:12+3\n", "15"), ("Q:4\n", "4"), ("Q:", "7")]
    examples = [encode_sft(char_tok, prompt, response) for prompt, response in pairs]
    rows = pack_sequences(examples, 16)
    # Lengths 10, 6 and 4: examples 0 and 1 fill row 0; example 2 (4 tokens) is padded to 16 in row 1.
    assert [r["sequence_ids"] for r in rows] == [[0] * 10 + [1] * 6, [0] * 4]
    batch = collate_padded(rows, pad_id=char_tok.pad_token_id)
    mask = block_causal_mask(batch["sequence_ids"], dtype=torch.float32)
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"]).logits
        alone = [model(input_ids=torch.tensor([ex["input_ids"]])).logits[0] for ex in examples]
    torch.testing.assert_close(packed[0, :10], alone[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(packed[0, 10:16], alone[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(packed[1, :4], alone[2], atol=1e-4, rtol=0)
    assert not torch.isnan(packed).any()


def test_position_ids_alone_do_not_separate_packed_examples(char_tok):
    """Records transformers 5.24 behaviour that makes the 4D mask necessary.

    With ``position_ids`` and no mask, Llama still attends across examples under the default
    ``use_cache=True`` (a cache is created, and masking_utils only infers packing when there is none).
    With ``use_cache=False`` it does infer packing from the position resets.
    """
    model = _tiny_llama(len(char_tok), "sdpa")
    a, b = [char_id(c) for c in "Q:12+3\n15"], [char_id(c) for c in "Q:4\n4"]
    ids = torch.tensor([a + b])
    pos = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    with torch.no_grad():
        alone_b = model(input_ids=torch.tensor([b])).logits[0]
        leaky = model(input_ids=ids, position_ids=pos).logits[0, len(a) :]
        inferred = model(input_ids=ids, position_ids=pos, use_cache=False).logits[0, len(a) :]
    assert (leaky - alone_b).abs().max() > 1e-2
    torch.testing.assert_close(inferred, alone_b, atol=1e-4, rtol=0)


def test_padding_waste():
    # Batches [2, 4] and [3, 1] pad to 4 and 3: 8 + 6 = 14 slots for 10 tokens.
    assert padding_waste([2, 4, 3, 1], 2) == pytest.approx(4 / 14)
    # Packing into rows of 5: 2->r0, 4->r1, 3->r0 (5), 1->r1 (5): one batch of two full rows.
    assert padding_waste([2, 4, 3, 1], 2, max_length=5, pack=True) == 0.0
    # Rows of 4: 2->r0, 4->r1, 3->r2, 1->r0 (3): rows [3, 4, 3]; batches [3, 4] -> 8 and [3] -> 3 slots.
    assert padding_waste([2, 4, 3, 1], 2, max_length=4, pack=True) == pytest.approx(1 / 11)
    # Batch of 3: [2, 4, 3] -> 12 slots, [1] -> 1 slot; 10 tokens of 13.
    assert padding_waste([2, 4, 3, 1], 3) == pytest.approx(3 / 13)
    assert padding_waste([], 2) == 0.0
    with pytest.raises(ValueError, match="max_length"):
        padding_waste([2, 4], 2, pack=True)
    with pytest.raises(ValueError, match="example 1 has length 4"):
        padding_waste([2, 4], 2, max_length=3)
