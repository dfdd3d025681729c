"""Tokenisation with loss masks, PRM/ORM label placement, packing and collation.

Everything here is framework-free (tokenizer in, Python lists or tensors out) so the DataModules, the
LightningModules and the tests share one definition of where every label sits.

Layout of one example: ``prompt tokens | response tokens | EOS``. The prompt is tokenised on its own (with the
tokenizer's template, e.g. a Llama BOS) and the response on its own, then concatenated; see
``encode_prompt`` for why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import torch
from transformers import PreTrainedTokenizerBase

from e2h.data.errors import DataError
from e2h.data.step_solutions import STEP_SEPARATOR, StepSolution

IGNORE_INDEX = -100
"""Label of a token that takes no part in the loss (the value PyTorch's cross entropy ignores by default)."""
IGNORE_LABEL = -100.0
"""The same, for the float per-token labels of the reward model (binary cross entropy has no ignore index)."""


class PromptTooLongError(DataError):
    """The prompt leaves no room for a single response token within ``max_length``.

    A subclass of ``DataError`` so a caller that prefers dropping such examples can catch exactly this case
    (and count it) while every other data fault still stops the run.
    """


class SFTExample(TypedDict):
    """One encoded SFT example: per-token ``input_ids`` and ``labels``, and whether the response was cut."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool


# ----------------------------------------------------------------------------------------------------------
# Encoding
# ----------------------------------------------------------------------------------------------------------


def _eos_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's EOS id; an error when it has none (the response must end in a token the model emits)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError(f"{type(tokenizer).__name__} has no eos_token; set one or pass add_eos=False")
    return int(eos)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> list[int]:
    """Token ids of ``prompt`` as generation feeds it to the model: the template's leading special tokens kept.

    The prompt is tokenised with ``add_special_tokens=True``, so a Llama-style tokenizer (template
    ``<s> $A``) starts it with BOS, and one without a template (GPT-2, Qwen, the char tokenizer) adds nothing.
    Special tokens a template appends *after* the text (an EOS, for tokenizers saved with
    ``add_eos_token=True``) are dropped: the response follows the prompt, so an EOS there would teach the
    model to stop before answering.

    Training tokenises prompt and response separately and concatenates them, instead of tokenising the joined
    text, because generation sees exactly ``encode_prompt(prompt)`` and continues from there: a BPE merge
    across the boundary (e.g. the prompt's final "\\n\\n" with the response's first character) would make
    training read prompt tokens the generator never sees.
    """
    with_template = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    plain = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    # A single-sequence template wraps the text: with_template = prefix + plain + suffix. Keep prefix + plain.
    for start in range(len(with_template) - len(plain) + 1):
        if with_template[start : start + len(plain)] == plain:
            return with_template[: start + len(plain)]
    raise ValueError(
        f"{type(tokenizer).__name__}: the template-wrapped prompt does not contain the plain tokenisation of the "
        "prompt; this tokenizer's post-processor is not a plain prefix/suffix template"
    )


def _response_room(prompt_length: int, max_length: int | None, where: str) -> int | None:
    """How many response tokens (EOS included) fit after the prompt; None when there is no limit."""
    if max_length is None:
        return None
    if max_length < 1:
        raise ValueError(f"max_length must be positive, got {max_length}")
    room = max_length - prompt_length
    if room < 1:
        raise PromptTooLongError(
            f"{where}: the prompt is {prompt_length} tokens, which leaves no room for the response within "
            f"max_length={max_length}; raise max_length or drop this example"
        )
    return room


def encode_sft(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    response: str,
    max_length: int | None = None,
    add_eos: bool = True,
    *,
    where: str = "example",
) -> SFTExample:
    """Encode one (prompt, response) pair for supervised fine-tuning.

    Returns ``input_ids`` = ``encode_prompt(prompt) + response tokens (+ EOS)`` and ``labels`` of the same
    length: ``IGNORE_INDEX`` (-100) on every prompt token, the token's own id on every response token and on
    the EOS (the model must learn to stop). Labels are unshifted, as Hugging Face causal-LM losses expect.

    Truncation to ``max_length`` cuts the response from its end (the EOS goes first) and sets ``truncated``;
    summing that field over a dataset counts the truncated examples. A prompt that leaves no room for even one
    response token raises ``PromptTooLongError`` (a ``DataError``), naming ``where``: such an example has
    nothing to learn, and cutting the prompt would train on a question the model never sees whole. An
    example with no response token at all (empty response and ``add_eos=False``) raises ``DataError``: it
    would contribute a 0/0 loss.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if add_eos:
        response_ids.append(_eos_id(tokenizer))
    if not response_ids:
        raise DataError(f"{where}: the response is empty and add_eos=False, so no token carries a label")
    room = _response_room(len(prompt_ids), max_length, where)
    truncated = room is not None and len(response_ids) > room
    if truncated:
        response_ids = response_ids[:room]
    return {
        "input_ids": prompt_ids + response_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + response_ids,
        "truncated": truncated,
    }


def step_char_spans(steps: Sequence[str], separator: str = STEP_SEPARATOR) -> list[tuple[int, int]]:
    """Character span ``[start, end)`` of every step in ``separator.join(steps)`` (an empty step: start == end)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for step in steps:
        spans.append((start, start + len(step)))
        start += len(step) + len(separator)
    return spans


def _char_token_bounds(offsets: Sequence[tuple[int, int]], n_chars: int) -> tuple[list[int], list[int]]:
    """For every character, the first and the last token whose offsets cover it (-1 where no token does).

    Whitespace a pre-tokenizer drops is covered by no token; a character split over several byte-level tokens
    is covered by all of them, hence two bounds.
    """
    first = [-1] * n_chars
    last = [-1] * n_chars
    for k, (a, b) in enumerate(offsets):
        for c in range(a, min(b, n_chars)):
            if first[c] < 0:
                first[c] = k
            last[c] = max(last[c], k)
    return first, last


def step_token_ranges(
    spans: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]], n_chars: int
) -> list[tuple[int, int] | None]:
    """First and last token index of every character span: the tokens whose offsets overlap it; None if none do.

    ``offsets`` is the tokenizer's offset mapping of the text the spans index. A token that straddles two
    spans (e.g. one that merges a step's last character with the separator) belongs to both.
    """
    first, last = _char_token_bounds(offsets, n_chars)
    ranges: list[tuple[int, int] | None] = []
    for start, end in spans:
        firsts = [k for k in first[start:end] if k >= 0]
        lasts = [k for k in last[start:end] if k >= 0]
        ranges.append((min(firsts), max(lasts)) if firsts else None)
    return ranges


@dataclasses.dataclass(frozen=True)
class EncodedSteps:
    """One step-labelled solution, encoded for a reward model (ORM, PRM or OPRM: the labels decide which).

    Per-token fields (length ``len(input_ids)``): ``input_ids``, ``step_labels``, ``outcome_labels``; labels
    are floats in {0.0, 1.0}, or ``IGNORE_LABEL`` (-100.0) where no loss applies. Unlike the SFT labels they
    are not shifted: the reward model's output *at* a token is read for that token's label.

    ``step_end_positions[i]`` is the index in ``input_ids`` of step i's last token, for every step, labelled
    or not (scoring reads the reward there); -1 for an unlabelled step whose end was truncated away.
    ``outcome_position`` is the index of the final token (the EOS when one was added and kept) and
    ``outcome_label`` the solution's outcome label (None for a PRM-only record). ``prompt_length`` counts the
    prompt tokens (the response starts there); ``truncated`` says whether ``max_length`` cut the response.
    """

    input_ids: list[int]
    step_end_positions: list[int]
    step_labels: list[float]
    outcome_position: int
    outcome_label: int | None
    outcome_labels: list[float]
    prompt_length: int
    truncated: bool

    def token_fields(self) -> dict[str, list[Any]]:
        """The per-token fields, as ``pack_sequences`` and ``collate_padded`` take them."""
        return {"input_ids": self.input_ids, "step_labels": self.step_labels, "outcome_labels": self.outcome_labels}


def encode_step_solution(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    solution: StepSolution,
    *,
    max_length: int | None = None,
    label_all_step_tokens: bool = False,
    add_eos: bool = True,
) -> EncodedSteps:
    """Encode a step-labelled solution and place its step and outcome labels on tokens.

    The response text is ``STEP_SEPARATOR.join(solution.steps)``. It is tokenised with its offset mapping, and
    step i's tokens are the tokens whose character offsets overlap step i's character span; the last of them
    is the step's end token. A labelled step's label goes on its end token (or, with
    ``label_all_step_tokens``, on every one of its tokens, as the official code trains; the end token always
    holds its own step's label, even where it also starts the next step). Placing labels from character
    offsets, rather than by searching for a step-marker token, keeps them right for any tokenizer, including
    ones that merge the separator into a neighbouring token.

    Labels are never silently dropped. ``DataError`` (naming the record's ``unique_id`` and the step index) is
    raised when:

    - a labelled step maps to no token (empty text, or text the pre-tokenizer discards, e.g. only spaces);
    - a labelled step's end was cut by ``max_length`` (partly or wholly: a label on a token before the true
      step end would score an unfinished step);
    - two labelled steps end on the same token (the placement would be ambiguous);
    - an unlabelled step maps to no token although nothing was truncated there (an empty step: its end
      position would be meaningless for scoring); an unlabelled step truncated away is fine and gets -1;
    - the outcome is labelled but the final token was truncated (the outcome label belongs at the EOS).

    A prompt that leaves no room for a response token raises ``PromptTooLongError``.
    """
    where = f"step-labelled record {solution.unique_id or '<no unique_id>'}"
    prompt_ids = encode_prompt(tokenizer, prompt)
    response = STEP_SEPARATOR.join(solution.steps)
    encoded = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    response_ids = list(encoded["input_ids"])
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    tail = response_ids + ([_eos_id(tokenizer)] if add_eos else [])
    if not tail:
        raise DataError(f"{where}: the response is empty and add_eos=False, so there is no token to score")

    room = _response_room(len(prompt_ids), max_length, where)
    truncated = room is not None and len(tail) > room
    kept = len(tail) if room is None else min(len(tail), room)  # response tokens kept, EOS included
    kept_text = min(kept, len(response_ids))  # ... of which are tokens of the response text
    # First character no longer represented: everything from it on was cut.
    cut_char = offsets[kept_text][0] if kept_text < len(response_ids) else len(response)

    n_prompt = len(prompt_ids)
    input_ids = prompt_ids + tail[:kept]
    step_labels = [IGNORE_LABEL] * len(input_ids)
    spans = step_char_spans(solution.steps)
    ranges = step_token_ranges(spans, offsets, len(response))

    end_positions: list[int] = []
    labelled: list[tuple[int, int, int, int]] = []  # (step index, first token, last token, label)
    for i, ((start, _end), token_range, label) in enumerate(zip(spans, ranges, solution.labels, strict=True)):
        if token_range is None:
            if kept_text < len(response_ids) and start >= cut_char:  # lies in the cut-off text
                if label is not None:
                    raise DataError(
                        f"{where}: labelled step {i} was truncated away by max_length={max_length}; "
                        "raise max_length or drop the record"
                    )
                end_positions.append(-1)
                continue
            raise DataError(
                f"{where}: step {i} maps to no token (its text is {solution.steps[i]!r}); "
                "remove empty steps from the record"
            )
        first, last = token_range
        if last >= kept_text:
            if label is not None:
                raise DataError(
                    f"{where}: labelled step {i} ends at response token {last}, beyond max_length={max_length} "
                    f"(room for {kept_text} response tokens); raise max_length or drop the record"
                )
            end_positions.append(-1)
            continue
        end_positions.append(n_prompt + last)
        if label is not None:
            labelled.append((i, first, last, label))

    seen_ends: dict[int, int] = {}
    for i, _first, last, _label in labelled:
        if last in seen_ends:
            raise DataError(
                f"{where}: labelled steps {seen_ends[last]} and {i} end on the same token "
                f"(response token {last}); their labels cannot both be placed"
            )
        seen_ends[last] = i

    if label_all_step_tokens:
        for _i, first, last, label in labelled:
            for k in range(first, last + 1):
                step_labels[n_prompt + k] = float(label)
    # Written last so a token shared with the next step's start keeps its own step's label.
    for _i, _first, last, label in labelled:
        step_labels[n_prompt + last] = float(label)

    outcome_position = len(input_ids) - 1
    if solution.outcome is not None and truncated:
        raise DataError(
            f"{where}: the outcome is labelled but the solution's end was truncated by max_length={max_length}; "
            "raise max_length or drop the record"
        )
    outcome_labels = [IGNORE_LABEL] * len(input_ids)
    if solution.outcome is not None:
        outcome_labels[outcome_position] = float(solution.outcome)

    return EncodedSteps(
        input_ids=input_ids,
        step_end_positions=end_positions,
        step_labels=step_labels,
        outcome_position=outcome_position,
        outcome_label=solution.outcome,
        outcome_labels=outcome_labels,
        prompt_length=n_prompt,
        truncated=truncated,
    )


# ----------------------------------------------------------------------------------------------------------
# Packing and collation
# ----------------------------------------------------------------------------------------------------------


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

    The first ``labels`` entry of every example is set to ``IGNORE_INDEX``: a causal-LM loss shifts labels by
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
                    values[0] = IGNORE_INDEX
                row[key].extend(values)
            row["position_ids"].extend(range(lengths[n]))
            row["sequence_ids"].extend([seq_id] * lengths[n])
        packed.append(row)
    return packed


def default_pad_values(pad_id: int, label_pad: int = IGNORE_INDEX) -> dict[str, int | float]:
    """Padding value of each per-token field ``collate_padded`` knows; a float value makes a float tensor."""
    return {
        "input_ids": pad_id,
        "labels": label_pad,
        "step_labels": float(label_pad),
        "outcome_labels": float(label_pad),
        "attention_mask": 0,
        "position_ids": 0,
        "sequence_ids": -1,
    }


def collate_padded(
    rows: Sequence[Mapping[str, Any]],
    pad_id: int,
    label_pad: int = IGNORE_INDEX,
    *,
    pad_to_multiple_of: int | None = None,
    pad_values: Mapping[str, int | float] | None = None,
) -> dict[str, Any]:
    """Pad rows on the right to the longest row (rounded up to ``pad_to_multiple_of``) and stack them.

    Per-token fields are those with a padding value (``default_pad_values``, updated by ``pad_values``):
    ``input_ids`` pads with ``pad_id``, ``labels`` with ``label_pad``, ``step_labels``/``outcome_labels`` with
    ``float(label_pad)`` (as float32 tensors), ``position_ids`` with 0, ``sequence_ids`` with -1 and
    ``attention_mask`` with 0; each becomes a ``[B, T]`` tensor (float32 when its padding value is a float,
    int64 otherwise). ``attention_mask`` (1 on real tokens), ``position_ids`` (0..n-1) and ``sequence_ids``
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
    tests/test_tokenization.py for Llama): a 4D tensor passed as ``attention_mask`` is returned as-is by
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
