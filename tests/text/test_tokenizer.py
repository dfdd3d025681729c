"""The character tokenizer (round trip, offsets, save and load) and loading tokenizers with a pad fallback."""

from __future__ import annotations

from transformers import AutoTokenizer

from e2h.text.tokenizer import load_tokenizer


def test_char_tokenizer_round_trip_offsets_and_save_load(char_tok, char_id, tmp_path):
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


def test_load_tokenizer_char_and_pad_fallback(unpadded_tok, tmp_path):
    char = load_tokenizer("char")
    assert char.pad_token == "<pad>" and char.padding_side == "right"

    no_pad = unpadded_tok
    assert no_pad.pad_token is None
    no_pad.save_pretrained(tmp_path)
    loaded = load_tokenizer(str(tmp_path))
    assert loaded.pad_token == "</s>" and loaded.pad_token_id == loaded.eos_token_id
    assert loaded.padding_side == "right"
