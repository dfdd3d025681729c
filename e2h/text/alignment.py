"""Where text and tokens meet: which tokens cover a character span, and which tokens are a step's.

Every character-to-token and step-to-token mapping in e2h goes through here: the reward model's training
labels (`e2h.text.encoding.encode_step_solution`, `e2h.datamodules.reward_model`), the scores it reads at
step ends (`e2h.modules.reward_model`), and PPO's process rewards (`e2h.modules.ppo`). A step's tokens are
the tokens whose character offsets overlap the step's characters (`e2h.data.step_solutions` says where the
steps are in the text), whatever the tokenizer; a step's score is read at its last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from e2h.data.step_solutions import completion_step_spans


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


def token_char_offsets(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """The decoded text of token ids and each token's character span ``[start, end)`` in it.

    Three ways, the first that is exact: re-tokenising the text reproduces `ids` (its offset mapping is then
    the answer); the tokens decoded one by one concatenate to the text; else decoding growing prefixes
    (slow, but right for any tokenizer). Special tokens decode to nothing (empty spans).
    """
    ids = list(ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if not ids:
        return text, []
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if list(enc["input_ids"]) == ids:
            return text, [tuple(o) for o in enc["offset_mapping"]]
    pieces = tokenizer.batch_decode([[i] for i in ids], skip_special_tokens=True)
    if "".join(pieces) == text:
        offsets, start = [], 0
        for piece in pieces:
            offsets.append((start, start + len(piece)))
            start += len(piece)
        return text, offsets
    offsets, start = [], 0
    for k in range(len(ids)):
        end = len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True))
        offsets.append((min(start, end), end))
        start = max(start, end)
    return text, offsets


def step_end_tokens(text: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Token index of the last token of every step a reward model scores in a completion (the steps of
    `e2h.data.step_solutions.completion_steps`, found in `text` as written).

    Two steps ending on one token (a token spanning the separator) keep the later: that token's score reads
    the text up to it. A step no token covers has no end.
    """
    ends: list[int] = []
    for token_range in step_token_ranges(completion_step_spans(text), offsets, len(text)):
        if token_range is None:
            continue
        end = token_range[1]
        if ends and end <= ends[-1]:
            ends[-1] = end
        else:
            ends.append(end)
    return ends


def labels_at(length: int, positions: Sequence[int], labels: Sequence[int | None], fill: float) -> list[float]:
    """A per-token label list of `length`: each step's label at its position, `fill` elsewhere (and for
    unlabelled steps, whose position may be -1)."""
    out = [fill] * length
    for position, label in zip(positions, labels, strict=True):
        if label is not None:
            out[position] = float(label)
    return out


def values_at(per_token: Any, positions: Sequence[int]) -> list[float]:
    """The values of a 1-D tensor (e.g. reward-model probabilities) at the given token positions."""
    return per_token[list(positions)].tolist() if len(positions) else []
