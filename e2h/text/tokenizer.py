"""Tokenizers: a character-level one for CPU experiments and tests, and loading any Hugging Face tokenizer.

The character tokenizer maps every character of its alphabet to one token, so a test can count positions
by hand (token i is character i) and a tiny model can learn arithmetic without a subword vocabulary. It is a
plain ``tokenizers`` pipeline wrapped in ``PreTrainedTokenizerFast``, so it saves with ``save_pretrained``
and reloads with ``AutoTokenizer.from_pretrained(folder)`` like any real tokenizer.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from e2h.data.files import require_local_path

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)

# The 95 printable ASCII characters (space to "~") plus the newline the prompt format and step separator use.
# string.printable also holds \t \r \x0b \x0c, which the prompt format does not use: they are left out (and
# encode to <unk>) unless a caller's alphabet includes them.
DEFAULT_ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\n"

CHAR_TOKENIZER_NAME = "char"


def _unique_chars(alphabet: str) -> list[str]:
    """The characters of ``alphabet`` in first-seen order, each once."""
    return list(dict.fromkeys(alphabet))


def build_char_tokenizer(alphabet: str | None = None) -> PreTrainedTokenizerFast:
    """Build a character-level tokenizer: one token per character of ``alphabet`` (default printable ASCII + "\\n").

    Ids: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, then the alphabet in order (duplicates dropped).
    A character outside the alphabet encodes to ``<unk>``.

    ``add_special_tokens=True`` adds nothing: no BOS, no EOS. The trainers append EOS themselves (so it is
    placed, and supervised, exactly where they decide) and a model trained from scratch gains nothing from a
    BOS; a real tokenizer whose template adds BOS keeps doing so (see ``e2h.text.encoding.encode_sft``).

    Offsets are character offsets into the input (``return_offsets_mapping=True`` gives ``(i, i + 1)`` for
    character i), and ``decode`` concatenates characters with nothing in between, so
    ``decode(encode(text)) == text`` for any text over the alphabet. Text is always split into characters,
    even where it spells a special token (``split_special_tokens=True``): the string ``"</s>"`` in a problem is
    four characters, never an EOS; special tokens enter only as ids the code adds.
    """
    chars = _unique_chars(DEFAULT_ALPHABET if alphabet is None else alphabet)
    if not chars:
        raise ValueError("build_char_tokenizer: the alphabet is empty")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab[ch] = len(vocab)

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    # Isolate every single character, whitespace and newlines included: "(?s)." would also do, but an explicit
    # class avoids depending on the regex engine's flag syntax.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    # Without a decoder, `tokenizers` joins tokens with spaces; Fuse concatenates them as they are.
    backend.decoder = decoders.Fuse()
    # An explicit no-op template, so `add_special_tokens=True` adds nothing and transformers does not install
    # its own template (it does when the post-processor is missing).
    backend.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        add_bos_token=False,
        add_eos_token=False,
        # The default clean-up rewrites " ." as "." and similar, which would break the exact round trip.
        clean_up_tokenization_spaces=False,
        split_special_tokens=True,
        padding_side="right",
        model_max_length=1_000_000,
    )


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load the tokenizer named ``name_or_path``, ready for training.

    ``"char"`` builds the character tokenizer (``build_char_tokenizer()``); anything else is a local folder (or
    an id, where a hub is reachable) given to ``AutoTokenizer.from_pretrained``.

    Padding goes on the right (the loss masks and packed layouts assume real tokens start at position 0);
    generation switches to left padding itself. A tokenizer without a pad token (Llama, GPT-2) gets its EOS as
    pad token: padded positions are excluded by the attention mask and by ignored labels
    (``e2h.text.encoding.IGNORE_LABEL``), never by comparing ids with the pad id, so the EOS the model must
    learn to emit is not masked by this choice.
    """
    if name_or_path == CHAR_TOKENIZER_NAME:
        tokenizer: PreTrainedTokenizerBase = build_char_tokenizer()
    else:
        require_local_path(name_or_path, "tokenizer (or model)")
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"tokenizer {name_or_path!r} has neither a pad token nor an EOS token to pad with; "
                "add a pad token to the tokenizer (tokenizer.add_special_tokens({'pad_token': ...})) and save it"
            )
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer
