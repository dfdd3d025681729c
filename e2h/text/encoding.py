"""Encoding examples as token ids with their labels: prompts, SFT pairs (prompt-masked), and step-labelled
solutions for reward models (labels placed on step ends through `e2h.text.alignment`).

Framework-free (tokenizer in, Python lists out), so the DataModules, the LightningModules and the tests share
one definition of where every label sits.

Layout of one example: ``prompt tokens | response tokens | EOS``. The prompt is tokenised on its own (with the
tokenizer's template, e.g. a Llama BOS) and the response on its own, then concatenated; see
``encode_prompt`` for why.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypedDict

from transformers import PreTrainedTokenizerBase

from e2h.data.errors import DataError
from e2h.data.prompts import STEP_SEPARATOR
from e2h.data.step_solutions import StepSolution, step_char_spans
from e2h.text.alignment import step_token_ranges

IGNORE_LABEL = -100
"""Label of a token that takes no part in the loss: the value PyTorch's cross entropy ignores by default, and
(as -100.0) the mark the reward model's float labels carry where its binary cross entropy reads nothing."""


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
    length: ``IGNORE_LABEL`` on every prompt token, the token's own id on every response token and on
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
        "labels": [IGNORE_LABEL] * len(prompt_ids) + response_ids,
        "truncated": truncated,
    }


@dataclasses.dataclass(frozen=True)
class EncodedSteps:
    """One step-labelled solution, encoded for a reward model (ORM, PRM or OPRM: the labels decide which).

    Per-token fields (length ``len(input_ids)``): ``input_ids``, ``step_labels``, ``outcome_labels``; labels
    are floats in {0.0, 1.0}, or ``float(IGNORE_LABEL)`` where no loss applies. Unlike the SFT labels they
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
    step_labels = [float(IGNORE_LABEL)] * len(input_ids)
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
    outcome_labels = [float(IGNORE_LABEL)] * len(input_ids)
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
