"""Tokenizers for the text tests: the char tokenizer's ids by hand, and two BPE tokenizers trained on arithmetic
text (byte-level, and one whose pre-tokenizer drops whitespace), so label placement is checked beyond one
character a token."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from e2h.text.tokenizer import DEFAULT_ALPHABET


@pytest.fixture(scope="session")
def char_id():
    """``char_id(c)``: the char tokenizer's id of `c`, by hand: 4 special tokens, then the alphabet in order."""
    return lambda c: 4 + DEFAULT_ALPHABET.index(c)


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


@pytest.fixture(scope="session")
def bytelevel_tok() -> PreTrainedTokenizerFast:
    return wrap(train_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False), TRAINING_LINES), pad_token="<pad>")


@pytest.fixture(scope="session")
def whitespace_tok() -> PreTrainedTokenizerFast:
    return wrap(train_bpe(pre_tokenizers.Whitespace(), TRAINING_LINES), pad_token="<pad>")


@pytest.fixture(scope="session")
def unpadded_tok() -> PreTrainedTokenizerFast:
    """A small BPE tokenizer saved without a pad token, padding on the left."""
    return wrap(train_bpe(pre_tokenizers.Whitespace(), TRAINING_LINES[:10], vocab_size=80), padding_side="left")


@pytest.fixture(scope="session")
def bpe() -> SimpleNamespace:
    """For tests that build their own BPE tokenizer: ``bpe.train(pre_tokenizer, lines, vocab_size)``,
    ``bpe.wrap(backend, **kwargs)``, and the arithmetic training text ``bpe.lines``."""
    return SimpleNamespace(train=train_bpe, wrap=wrap, lines=TRAINING_LINES)
