"""Where text and tokens meet: which tokens cover a character span, and which tokens are a step's.

Every step-to-token mapping in e2h goes through here: the reward model's training labels
(`e2h.text.encoding.encode_step_solution`), the scores read at step ends, and PPO's process rewards. A
step's tokens are the tokens whose character offsets overlap the step's characters, whatever the tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

from e2h.data.prompts import STEP_SEPARATOR


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
