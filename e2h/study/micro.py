"""The micro MATH study's inputs, made here from MATH train: a small model and a PRM800K-format stand-in.

`bin/study.py --profile math --micro` runs every stage of the math profile on a CPU, on the real MATH files,
with a model that is built rather than downloaded:

- `build_micro_model`: a byte-level BPE tokenizer trained (with the `tokenizers` library) on MATH train
  problems and solutions, and a tiny Llama built from `LlamaConfig` with random weights, saved together as one
  Hugging Face folder (``save_pretrained``), so the stages load it exactly as they load a user's ``--model``.
- `write_prm800k_standin`: records in the raw PRM800K *phase-2 schema* (``question`` / ``label.steps[]`` /
  ``completions[{text, rating, flagged}]`` / ``chosen_completion`` / ``finish_reason``) on MATH *train*
  problems: the gold solution cut into steps rated 1, some runs with a step whose number was changed, rated -1
  (the labeller stops there), a few neutral (0) ratings, an alternative wrong completion beside a chosen
  right one, and a few records on MATH500 problems and on hard levels that the conversion must drop. It is a
  **format stand-in**, not PRM800K's labels: there is no PRM800K training file here, and its ratings are
  made up from gold solutions.

Numbers from a random micro model mean nothing: the micro study checks that every stage runs and writes what
the next one reads.

    python -m e2h.cli.study micro model OUT_DIR [--math MATH_TRAIN.jsonl]
    python -m e2h.cli.study micro prm800k OUT.jsonl [--math MATH_TRAIN.jsonl --test MATH500.jsonl]
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from e2h.data.files import atomic_write_text
from e2h.data.records import Problem, load_problems

# The micro model: small enough that every stage of the study runs in seconds on a CPU core.
MICRO_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)
MICRO_VOCAB = 1024
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def _sample(problems: list[Problem], n: int, seed: int) -> list[Problem]:
    return problems if n >= len(problems) else random.Random(seed).sample(problems, n)


def build_micro_tokenizer(texts: list[str], vocab_size: int = MICRO_VOCAB):
    """A byte-level BPE tokenizer trained on `texts` (GPT-2's pre-tokenizer, any UTF-8 text encodes), with a
    Llama-style template that starts every sequence with BOS, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL.values()),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL["bos_token"]
    # trim_offsets=False: offsets cover the leading space of a token, as Llama-3's tokenizer has them
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, backend.token_to_id(bos))]),
    ])
    return PreTrainedTokenizerFast(tokenizer_object=backend, clean_up_tokenization_spaces=False,
                                   model_max_length=MICRO_LLAMA["max_position_embeddings"], **SPECIAL)


def build_micro_model(out: str | Path, math_train: str | Path, *, texts: int = 3000, vocab_size: int = MICRO_VOCAB,
                      seed: int = 0) -> Path:
    """Train the tokenizer on `texts` MATH train problems with their solutions, build a tiny random Llama
    around it, and save both in `out` (a Hugging Face folder). Returns `out`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    problems = _sample(load_problems(str(math_train)), texts, seed)
    tokenizer = build_micro_tokenizer([f"{p.problem}\n\n{p.solution}" for p in problems], vocab_size)
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in SPECIAL.items() if k != "unk_token"}
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=ids["bos_token"], eos_token_id=ids["eos_token"],
                         pad_token_id=ids["pad_token"], **MICRO_LLAMA)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------------
# The PRM800K-format stand-in

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_NUMBER = re.compile(r"\d+")


_MATH_DELIMITERS = re.compile(r"\\\$|\$\$|\$|\\\[|\\\]|\\\(|\\\)")  # \$ (a dollar sign), $$, $, \[, \], \(, \)
_CLOSES = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}


def _outside_math(text: str, index: int) -> bool:
    """Whether position `index` of `text` lies outside inline and display math ($...$, $$...$$, \\[...\\],
    \\(...\\)); an escaped dollar sign opens nothing."""
    closing = None
    for m in _MATH_DELIMITERS.finditer(text, 0, index):
        delimiter = m.group()
        if closing is None and delimiter in _CLOSES:
            closing = _CLOSES[delimiter]
        elif delimiter == closing:
            closing = None
    return closing is None


def gold_steps(solution: str) -> list[str]:
    """A gold MATH solution cut into steps: its paragraphs, and each paragraph into sentences (split only
    outside math). Steps keep their inner single newlines (multi-line display math stays one step)."""
    steps = []
    for paragraph in solution.strip().split("\n\n"):
        start = 0
        for m in _SENTENCE_END.finditer(paragraph):
            if _outside_math(paragraph, m.start()):
                steps.append(paragraph[start:m.start()])
                start = m.end()
        steps.append(paragraph[start:])
    return [s.strip() for s in steps if s.strip()]


def _wrong(step: str, rng: random.Random) -> str | None:
    """The step with one of its numbers changed (a wrong step), or None when it has no number."""
    numbers = list(_NUMBER.finditer(step))
    if not numbers:
        return None
    m = rng.choice(numbers)
    return step[:m.start()] + str(int(m.group()) + rng.randint(1, 9)) + step[m.end():]


def _completion(text: str, rating: int) -> dict[str, Any]:
    return {"text": text, "rating": rating, "flagged": None}


def standin_record(problem: Problem, rng: random.Random, generation: int = 0) -> dict[str, Any]:
    """One raw phase-2 record on `problem`: its gold steps and a final ``# Answer`` step, rated as the module
    docstring says. A third of the records go wrong at a step with a number; one in five rates a step 0."""
    steps = gold_steps(problem.solution) + [f"# Answer\n\n{problem.answer}"]
    label_steps: list[dict[str, Any]] = []
    finish = "solution"
    mode = rng.choice(("right", "wrong_stop", "alternative"))
    candidates = [i for i, s in enumerate(steps[:-1]) if _NUMBER.search(s)]
    at = rng.choice(candidates) if candidates and mode != "right" else None
    for i, step in enumerate(steps):
        rating = 0 if i > 0 and rng.random() < 0.2 else 1
        if i == at and mode == "wrong_stop":
            # the labeller rates the changed step -1 and stops: no chosen completion, the record ends
            label_steps.append({"completions": [_completion(_wrong(step, rng), -1)], "human_completion": None,
                                "chosen_completion": None})
            finish = "found_error"
            break
        completions = [_completion(step, rating)]
        if i == at:  # a wrong alternative rated beside the right step, which is the one chosen
            completions.append(_completion(_wrong(step, rng), -1))
            rng.shuffle(completions)
        chosen = next(c for c, comp in enumerate(completions) if comp["rating"] != -1)
        label_steps.append({"completions": completions, "human_completion": None, "chosen_completion": chosen})
    return {
        "labeler": "e2h-micro-standin",
        "timestamp": None,
        "generation": generation,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {
            "problem": problem.problem,
            "ground_truth_solution": problem.solution,
            "ground_truth_answer": problem.answer,
            "pre_generated_steps": steps,
            "pre_generated_answer": problem.answer,
            "pre_generated_verifier_score": None,
        },
        "label": {"steps": label_steps, "total_time": 0, "finish_reason": finish},
    }


def write_prm800k_standin(out: str | Path, math_train: str | Path, math_test: str | Path | None = None, *,
                          easy: int = 48, hard: int = 8, held_out: int = 4, seed: int = 0) -> Path:
    """Write the stand-in: records on `easy` MATH train problems of levels 1-3 and `hard` of levels 4-5 (which
    ``--levels 1 2 3`` drops), and `held_out` on MATH500 problems (which ``--exclude`` drops)."""
    rng = random.Random(seed)
    train = load_problems(str(math_train))
    chosen = (_sample([p for p in train if p.level in (1, 2, 3)], easy, seed)
              + _sample([p for p in train if p.level in (4, 5)], hard, seed))
    if math_test is not None and held_out:
        chosen += _sample(load_problems(str(math_test)), held_out, seed)
    records = [standin_record(p, rng, generation=i % 10) for i, p in enumerate(chosen)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text("".join(json.dumps(r) + "\n" for r in records), out)
    return out
