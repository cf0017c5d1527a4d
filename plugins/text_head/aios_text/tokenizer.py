"""The text head's tokenizer: byte-level BPE trained on the corpus with HF `tokenizers`.

Byte-level BPE encodes any string (no unknown token) and decodes it back exactly; batch encoding
runs in Rust on all cores. The special tokens are the ones masked diffusion needs: `<mask>` (the
absorbing state), `<pad>`, `<bos>` and `<eos>`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from aios.io import write_atomic

SPECIAL_TOKENS = ("<pad>", "<mask>", "<bos>", "<eos>")


class TextTokenizer:
    """A trained BPE tokenizer with the ids of the special tokens at hand."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"the tokenizer lacks the special tokens {missing}; train it with "
                             "aios_text.tokenizer.train_tokenizer")
        self.tokenizer = tokenizer
        self.pad_id, self.mask_id, self.bos_id, self.eos_id = (
            tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`, dropping special tokens (masks included)."""
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `tokenizer.json` atomically (temporary file, then rename)."""
        write_atomic(path, lambda f: f.write(self.tokenizer.to_str().encode("utf-8")))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TextTokenizer:
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as exc:
            if isinstance(exc, ValueError) and "special tokens" in str(exc):
                raise
            raise ValueError(f"{path} is not a readable tokenizer file ({exc}); "
                             "retrain it or restore the model directory") from exc


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096,
                    min_frequency: int = 2) -> TextTokenizer:
    """Train byte-level BPE on `texts`; the special tokens get the first ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tokenizer)
