"""A byte-level BPE tokenizer trained on the task's own text with ``tokenizers`` and wrapped as a
``PreTrainedTokenizerFast`` — no hub download. Digits are split one per token (as in many arithmetic
studies) so a number the model never saw whole, e.g. 17 in the ``shifted_numbers`` set, is made of
digits it did see. The space before a colour word (any all-capital word of three or more letters) is
split off, so a colour is one token wherever it stands: ``BLUE`` in a rule and at the start of a card
line alike (GPT-2's pre-tokenizer would make these two tokens, `` BLUE`` and ``BLUE``, and a model must
then learn the match between them). `` BIG`` and `` SMALL`` keep their space, so the label answer is a
single token after ``Answer:``. ``<|endoftext|>`` is BOS and EOS, as in
GPT-2; ``<|pad|>`` pads.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|pad|>"
# The space before a capital word (a colour) is its own piece, except before an answer label.
COLOUR_SPACE = Regex(r" (?=[A-Z]{3,}\b)(?!(?:BIG|SMALL)\b)")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A ``PreTrainedTokenizerFast`` trained on ``texts``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(COLOUR_SPACE, behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )


def tokenizer_for_datasets(datasets, vocab_size: int = 512, out_dir: str | Path | None = None):
    """Train on every prompt + completion of every split (the surface text only, never the labels), so
    OOD words such as PURPLE are tokens rather than stray bytes; save to ``out_dir`` if given."""

    def texts():
        for split in datasets.values():
            for prompt, completion in zip(split["prompt"], split["completion"]):
                yield prompt + completion

    tokenizer = train_tokenizer(texts(), vocab_size)
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer
