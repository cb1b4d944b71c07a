"""The organism's tokenizer: byte-level BPE trained on the generated corpus.

Byte-level BPE (the GPT-2 scheme, with the `tokenizers` library) can encode any
text, including identifiers the corpus never showed, and decodes back to exactly
the input: indentation and blank lines in code survive a round trip, which the
parser-based checks downstream depend on.

`<|endoftext|>` ends every document in pretraining and is both the eos and the bos
token: encoding with special tokens puts it in front of a prompt, so a prompt
starts the way every pretraining document did (right after the previous one's
end-of-text). `<pad>` only pads batches and is never trained on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy; imported inside the function at run time
    from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<pad>"
SPECIAL_TOKENS = (EOS, PAD)  # ids 0 and 1


def train_tokenizer(texts: Iterable[str], *, vocab_size: int, model_max_length: int | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of `vocab_size` entries (special tokens included) trained on `texts`.

    Training is deterministic: the same texts and size give the same vocabulary and merges.
    `model_max_length` is what the tokenizer reports as the model's context (optional).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    minimum = len(SPECIAL_TOKENS) + 256  # the 256 byte symbols are always in the vocabulary
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} (256 bytes + {len(SPECIAL_TOKENS)} special tokens), got {vocab_size}")

    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: a text is not altered before splitting, so decode(encode(x)) == x.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    eos_id = tokenizer.token_to_id(EOS)
    # add_special_tokens=True prepends <|endoftext|> as bos (see the module docstring).
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", pair=f"{EOS} $A {EOS} $B", special_tokens=[(EOS, eos_id)]
    )
    extra = {"model_max_length": model_max_length} if model_max_length else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        clean_up_tokenization_spaces=False,  # never touch spaces on decode: code must come back verbatim
        **extra,
    )
