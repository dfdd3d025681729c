"""Packing whole examples into rows, collating rows into padded batches, and the block-causal mask that keeps
packed examples apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from e2h.data.errors import DataError
from e2h.text.encoding import IGNORE_LABEL


def first_fit_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Assign items to rows of at most ``capacity`` by first fit, in input order: indices of the items per row.

    Each item goes into the first (lowest-numbered) row with room for it, else opens a new row; rows are
    numbered in opening order and keep their items in input order, so the result is deterministic.
    A segment tree over the rows' free space finds that first row in O(log n) per item (plain first fit is
    quadratic in the number of rows). Raises ``ValueError`` for an item longer than ``capacity``.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be positive, got {capacity}")
    n = len(lengths)
    for i, length in enumerate(lengths):
        if length < 0 or length > capacity:
            raise ValueError(f"item {i} has length {length}, outside 0..{capacity}; truncate it before packing")
    if n == 0:
        return []
    size = 1
    while size < n:
        size *= 2
    # Leaves hold the free space of rows 0..size-1; unopened rows are full-capacity leaves, so the leftmost leaf
    # with enough room is exactly first fit's choice (an open row, or else the next new one).
    tree = [capacity] * (2 * size)
    rows: list[list[int]] = []
    for i, length in enumerate(lengths):
        node = 1
        while node < size:
            node = 2 * node if tree[2 * node] >= length else 2 * node + 1
        row = node - size
        if row == len(rows):
            rows.append([])
        rows[row].append(i)
        tree[node] -= length
        node //= 2
        while node:
            tree[node] = max(tree[2 * node], tree[2 * node + 1])
            node //= 2
    return rows


_GENERATED_KEYS = ("position_ids", "sequence_ids")


def pack_sequences(
    examples: Sequence[Mapping[str, Any]], max_length: int, *, keys: Sequence[str] | None = None
) -> list[dict[str, list[Any]]]:
    """Pack whole examples into rows of at most ``max_length`` tokens (first fit, see ``first_fit_rows``).

    Every per-token field in ``keys`` (default: every list-valued field of the first example) is concatenated
    across the examples of a row; non-list fields (such as ``truncated``) are left out. Each row also gets
    ``position_ids`` restarting at 0 for every example and ``sequence_ids`` numbering the examples of the row
    0, 1, 2, ... — give both to the model, with ``block_causal_mask(sequence_ids)`` as its attention mask,
    so that no example attends to another.

    The first ``labels`` entry of every example is set to ``IGNORE_LABEL``: a causal-LM loss shifts labels by
    one, so in a packed row the last token of one example would otherwise be trained to predict the first
    token of the next, a target that does not exist when the examples run alone.

    Raises ``DataError`` when a field is missing or is not per-token (length differs from ``input_ids``: pass
    ``keys`` to leave such a field out, e.g. ``step_end_positions``), and ``ValueError`` for an example longer
    than ``max_length`` (truncate when encoding).
    """
    if not examples:
        return []
    if keys is None:
        keys = [k for k, v in examples[0].items() if isinstance(v, list) and k not in _GENERATED_KEYS]
    if "input_ids" not in keys:
        raise DataError(f"pack_sequences: 'input_ids' must be among the packed keys, got {list(keys)}")
    lengths = []
    for n, example in enumerate(examples):
        length = len(example["input_ids"])
        for key in keys:
            if key not in example:
                raise DataError(f"pack_sequences: example {n} has no field {key!r}")
            if len(example[key]) != length:
                raise DataError(
                    f"pack_sequences: field {key!r} of example {n} has {len(example[key])} entries for {length} "
                    "tokens; only per-token fields can be packed (leave the others out with keys=...)"
                )
        lengths.append(length)
    packed: list[dict[str, list[Any]]] = []
    for members in first_fit_rows(lengths, max_length):
        row: dict[str, list[Any]] = {key: [] for key in (*keys, *_GENERATED_KEYS)}
        for seq_id, n in enumerate(members):
            for key in keys:
                values = list(examples[n][key])
                if key == "labels" and values:
                    values[0] = IGNORE_LABEL
                row[key].extend(values)
            row["position_ids"].extend(range(lengths[n]))
            row["sequence_ids"].extend([seq_id] * lengths[n])
        packed.append(row)
    return packed


def default_pad_values(pad_id: int, label_pad: int = IGNORE_LABEL) -> dict[str, int | float]:
    """Padding value of each per-token field ``collate_padded`` knows; a float value makes a float tensor.

    ``labels`` are unshifted causal-LM labels, ``targets`` the generator's already-shifted ones; the other
    label fields are the reward model's (floats).
    """
    return {
        "input_ids": pad_id,
        "labels": label_pad,
        "targets": label_pad,
        "step_labels": float(label_pad),
        "step_end_labels": float(label_pad),
        "outcome_labels": float(label_pad),
        "attention_mask": 0,
        "position_ids": 0,
        "sequence_ids": -1,
    }


def collate_padded(
    rows: Sequence[Mapping[str, Any]],
    pad_id: int,
    label_pad: int = IGNORE_LABEL,
    *,
    pad_to_multiple_of: int | None = None,
    pad_values: Mapping[str, int | float] | None = None,
) -> dict[str, Any]:
    """Pad rows on the right to the longest row (rounded up to ``pad_to_multiple_of``) and stack them.

    Per-token fields are those with a padding value (``default_pad_values``, updated by ``pad_values``):
    ``input_ids`` pads with ``pad_id``, ``labels`` and ``targets`` with ``label_pad``, ``step_labels``,
    ``step_end_labels`` and ``outcome_labels`` with ``float(label_pad)`` (as float32 tensors),
    ``position_ids`` with 0, ``sequence_ids`` with -1 and ``attention_mask`` with 0; each becomes a ``[B, T]``
    tensor (float32 when its padding value is a float, int64 otherwise). ``attention_mask`` (1 on real tokens), ``position_ids`` (0..n-1) and ``sequence_ids``
    (all 0) are created for rows that lack them, so packed and unpacked batches look alike. Any other field
    (e.g. ``step_end_positions``, ``unique_id``) is passed through as a list over the batch.
    """
    if not rows:
        raise ValueError("collate_padded: no rows")
    pads = default_pad_values(pad_id, label_pad)
    if pad_values:
        pads.update(pad_values)
    lengths = [len(row["input_ids"]) for row in rows]
    width = max(lengths)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of

    filled = []
    for row, length in zip(rows, lengths, strict=True):
        row = dict(row)
        row.setdefault("attention_mask", [1] * length)
        row.setdefault("position_ids", list(range(length)))
        row.setdefault("sequence_ids", [0] * length)
        filled.append(row)

    batch: dict[str, Any] = {}
    for key in filled[0]:
        if key not in pads:
            batch[key] = [row[key] for row in filled]
            continue
        pad = pads[key]
        dtype = torch.float32 if isinstance(pad, float) else torch.long
        tensor = torch.full((len(filled), width), pad, dtype=dtype)
        for b, (row, length) in enumerate(zip(filled, lengths, strict=True)):
            values = row[key]
            if len(values) != length:
                raise DataError(
                    f"collate_padded: field {key!r} of row {b} has {len(values)} entries for {length} tokens"
                )
            if length:
                tensor[b, :length] = torch.as_tensor(values, dtype=dtype)
        batch[key] = tensor
    return batch


def block_causal_mask(sequence_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``[B, 1, T, T]`` attention mask that keeps packed examples apart: token i sees token j iff both
    belong to the same example (equal ``sequence_ids`` >= 0) and j <= i.

    With a floating ``dtype`` (the default) the mask is additive: 0 where attention is allowed and
    ``torch.finfo(dtype).min`` elsewhere; pass the model's dtype. With ``dtype=torch.bool`` it is True where
    attention is allowed.

    How transformers 5.24 takes it (read in ``masking_utils._preprocess_mask_arguments`` and checked by
    tests/text/test_packing.py for Llama): a 4D tensor passed as ``attention_mask`` is returned as-is by
    ``create_causal_mask`` and reaches the attention function unchanged. ``sdpa`` hands it to
    ``torch.nn.functional.scaled_dot_product_attention``, which accepts both forms; ``eager`` *adds* it to the
    attention scores, so a boolean mask there silently adds 0/1 instead of masking — use the additive form,
    which works for both. Pass ``position_ids`` from ``pack_sequences`` alongside, so rotary positions restart
    for each example.

    Padding positions (``sequence_ids`` -1) attend to themselves only: a row with no allowed key is a softmax
    over nothing, which some kernels turn into NaN. Their outputs carry no label, so what they see is
    irrelevant. The mask holds B*T*T entries (for 8 x 2048 in bf16: 64 MiB), built once per batch.
    """
    if sequence_ids.ndim != 2:
        raise ValueError(f"sequence_ids must be [batch, time], got shape {tuple(sequence_ids.shape)}")
    length = sequence_ids.shape[1]
    positions = torch.arange(length, device=sequence_ids.device)
    causal = positions[None, :, None] >= positions[None, None, :]
    same = sequence_ids[:, :, None] == sequence_ids[:, None, :]
    real = (sequence_ids >= 0)[:, :, None]
    diagonal = torch.eye(length, dtype=torch.bool, device=sequence_ids.device)[None]
    allowed = (causal & same & real) | (diagonal & ~real)
    allowed = allowed[:, None]
    if dtype == torch.bool:
        return allowed
    zero = torch.zeros((), dtype=dtype, device=sequence_ids.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def padding_waste(
    lengths: Sequence[int], batch_size: int, max_length: int | None = None, pack: bool = False
) -> float:
    """Fraction of the token slots of all batches that hold padding, for examples of these lengths.

    Without packing, the examples are batched in order, ``batch_size`` at a time, and each batch is padded to
    its longest example (the last batch may be smaller and counts only its own rows). With ``pack=True``
    (``max_length`` required) the examples are first packed into rows of at most ``max_length`` by
    ``first_fit_rows`` (as ``pack_sequences`` does), the rows are batched in order, and each batch is padded
    to its longest row — what ``collate_padded`` does; padding every row to ``max_length`` would instead count
    slots a dynamic collator never allocates. An example longer than ``max_length`` raises ``ValueError`` in
    both modes (truncate first). No examples: 0.0.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if pack and max_length is None:
        raise ValueError("padding_waste: pack=True needs max_length (the packed row length)")
    if max_length is not None:
        for i, length in enumerate(lengths):
            if length > max_length:
                raise ValueError(f"example {i} has length {length} > max_length={max_length}; truncate it first")
    if pack:
        assert max_length is not None
        row_lengths = [sum(lengths[i] for i in row) for row in first_fit_rows(lengths, max_length)]
    else:
        row_lengths = list(lengths)
    slots = 0
    for start in range(0, len(row_lengths), batch_size):
        batch = row_lengths[start : start + batch_size]
        slots += len(batch) * max(batch)
    if slots == 0:
        return 0.0
    return (slots - sum(row_lengths)) / slots
