"""Step labels sit on the last token of the right step, whatever the tokenizer: one without a pad token, one
whose template adds a BOS, and one that merges the step separator with the next word (so "\\n\\n" is never a
token of its own). Checked by decoding, in the three places a step's end is used: the reward model's
training labels, the positions scoring reads, and PPO's process-reward positions in a generated completion.

A misplaced label is the silent error that ruins a PRM: it trains, scores and reports, on the wrong tokens.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from tokenizers import Regex, decoders, pre_tokenizers, processors

from e2h.data.prompts import STEP_SEPARATOR
from e2h.data.step_solutions import StepSolution
from e2h.datamodules.reward_model import StepsDataModule, encode_example
from e2h.datamodules.sources import LabelledExample
from e2h.text.alignment import step_end_tokens, token_char_offsets
from e2h.text.tokenizer import load_tokenizer

PROMPT = "# Question\n\nWhat is 3+4+5?\n\n# Solution\n\n"
STEPS = ("We add 3+4=7.", "Then we add 7+5=12.", "The answer is 12.")
# Text where "\n\nThen" and "\n\nThe" are frequent, so a BPE with no pre-tokenizer learns them as tokens.
MERGING_LINES = [f"We add {a}+{b}={a + b}.\n\nThen we add {a + b}+{c}={a + b + c}.\n\nThe answer is {a + b + c}."
                 for a in range(1, 9) for b in range(1, 9) for c in (2, 5)]


def _no_pad(bpe, tmp_path):
    """Saved without a pad token, loaded as a user's folder (e2h pads with EOS)."""
    tok = bpe.wrap(bpe.train(pre_tokenizers.ByteLevel(add_prefix_space=False), bpe.lines + MERGING_LINES, 400))
    assert tok.pad_token is None
    tok.save_pretrained(tmp_path / "no_pad")
    loaded = load_tokenizer(str(tmp_path / "no_pad"))
    assert loaded.pad_token == loaded.eos_token
    return loaded


def _adds_bos(bpe, tmp_path):
    backend = bpe.train(pre_tokenizers.ByteLevel(add_prefix_space=False), bpe.lines + MERGING_LINES, 400)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = bpe.wrap(backend, pad_token="<pad>")
    assert tok("x")["input_ids"][0] == tok.bos_token_id
    return tok


def _merges_separator(bpe, tmp_path):
    # Whitespace joins the word after it (as GPT-2's " add", here for newlines too): "\n\nThen" is one piece.
    backend = bpe.train(pre_tokenizers.Split(Regex(r"\s*\S+"), behavior="isolated"), MERGING_LINES + [PROMPT], 300)
    backend.decoder = decoders.Fuse()
    tok = bpe.wrap(backend, pad_token="<pad>")
    pieces = tok.convert_ids_to_tokens(tok(STEP_SEPARATOR.join(STEPS), add_special_tokens=False)["input_ids"])
    assert "\n\n" not in pieces and any("\n\nThe" in p for p in pieces)  # the separator is inside a word's token
    return tok


TOKENIZERS = {"no pad token": _no_pad, "adds a BOS": _adds_bos, "merges the separator": _merges_separator}


@pytest.fixture(params=list(TOKENIZERS))
def tok(request, bpe, tmp_path):
    return TOKENIZERS[request.param](bpe, tmp_path)


def _assert_ends_steps(tok, ids: list[int], start: int, ends: list[int], steps=STEPS):
    """Token `ends[i]` completes step i: the text decoded from `start` up to it holds steps 0..i in full, and
    up to the token before it does not hold step i yet."""
    assert len(ends) == len(steps)
    for i, end in enumerate(ends):
        through = tok.decode(ids[start : end + 1], skip_special_tokens=True)
        before = tok.decode(ids[start:end], skip_special_tokens=True)
        written = STEP_SEPARATOR.join(steps[: i + 1])
        assert through.startswith(written), (i, through)
        assert not before.startswith(written), (i, before)


def test_training_labels_sit_on_each_steps_last_token(tok):
    example = LabelledExample(StepSolution(problem="p", steps=STEPS, labels=(1, 0, 1), unique_id="r"), PROMPT, "t")
    row = encode_example(tok, example, max_length=None)
    ids, ends = row["input_ids"], row["step_end_positions"]
    start = len(ids) - len(tok(STEP_SEPARATOR.join(STEPS), add_special_tokens=False)["input_ids"]) - 1  # then EOS
    assert tok.decode(ids[:start], skip_special_tokens=True) == PROMPT
    _assert_ends_steps(tok, ids, start, ends)
    # the labels are on those tokens and nowhere else; the outcome is on the EOS
    assert {i: v for i, v in enumerate(row["step_end_labels"]) if v != -100} == {ends[0]: 1.0, ends[1]: 0.0, ends[2]: 1.0}
    assert ids[-1] == tok.eos_token_id


def test_scoring_reads_each_step_at_its_last_token(tok):
    line = {"problem_id": "p", "sample_index": 0, "prompt": PROMPT, "completion": STEP_SEPARATOR.join(STEPS)}
    # the data module's own collate function, with the batching left out
    collate = StepsDataModule._collate_samples
    (row,) = collate(SimpleNamespace(tokenizer=tok, _collate=lambda rows: rows), [("samples.jsonl:1", line)])
    ids = row["input_ids"]
    start = len(ids) - len(tok(line["completion"], add_special_tokens=False)["input_ids"]) - 1
    _assert_ends_steps(tok, ids, start, row["step_end_positions"])
    assert row["outcome_position"] == len(ids) - 1


def test_ppo_reads_process_rewards_at_each_steps_last_token(tok):
    # PPO has the generated token ids, not a text to re-tokenise: the ends come from their decoded offsets.
    completion = STEP_SEPARATOR.join(STEPS)
    ids = tok(completion, add_special_tokens=False)["input_ids"]
    text, offsets = token_char_offsets(tok, ids)
    assert text == completion
    _assert_ends_steps(tok, ids, 0, step_end_tokens(text, offsets))
