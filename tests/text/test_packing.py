"""Packing examples into rows, collating them, and the block-causal mask that keeps packed examples apart (checked
against examples run alone on a tiny Llama)."""

from __future__ import annotations

import pytest
import torch

from e2h.data.errors import DataError
from e2h.text.encoding import IGNORE_LABEL, encode_sft
from e2h.text.packing import block_causal_mask, collate_padded, first_fit_rows, pack_sequences, padding_waste


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


def tiny_model(tiny_llama, attn: str):
    # No pad id: the padding row of the embedding stays random, as it was when this test was written.
    return tiny_llama.build(max_position_embeddings=64, attn_implementation=attn, pad_token_id=None).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_row_matches_examples_run_alone(char_tok, tiny_llama, attn):
    model = tiny_model(tiny_llama, attn)
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


def test_position_ids_alone_do_not_separate_packed_examples(char_tok, tiny_llama):
    """Records transformers 5.24 behaviour that makes the 4D mask necessary.

    With ``position_ids`` and no mask, Llama still attends across examples under the default
    ``use_cache=True`` (a cache is created, and masking_utils only infers packing when there is none).
    With ``use_cache=False`` it does infer packing from the position resets.
    """
    model = tiny_model(tiny_llama, "sdpa")
    a, b = (char_tok(text, add_special_tokens=False)["input_ids"] for text in ("Q:12+3\n15", "Q:4\n4"))
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
