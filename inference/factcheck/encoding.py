"""(premise, claim) pairs → the model's inputs, the same way in training, evaluation and at run time.

A pair that does not fit the window loses the end of its premise, never its claim: the claim is what
is being checked, and the passage often states the fact early. Only a claim longer than half the
window is cut too, so that some of the premise always remains.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PairEncoder:
    """Tokenizes pairs as `[CLS] premise [SEP] claim [SEP]` within `max_length` word pieces."""

    def __init__(self, tokenizer_path: Path, *, max_length: int):
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # Truncation and padding are done here, per pair and per batch, not by the tokenizer's defaults.
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = max_length
        self._text_budget = max_length - self.tokenizer.num_special_tokens_to_add(is_pair=True)

    @property
    def special_token_ids(self) -> list[int]:
        """The ids the tokenizer adds around a pair ([CLS] and [SEP] for MiniLM)."""
        nothing = self.tokenizer.encode("", add_special_tokens=False)
        return sorted(set(self.tokenizer.post_process(nothing, nothing, add_special_tokens=True).ids))

    def encode(self, pairs: Sequence[tuple[str, str]]) -> list[Encoding]:
        premises = self.tokenizer.encode_batch([premise for premise, _ in pairs], add_special_tokens=False)
        claims = self.tokenizer.encode_batch([claim for _, claim in pairs], add_special_tokens=False)
        encodings = []
        for premise, claim in zip(premises, claims, strict=True):
            claim.truncate(self._text_budget // 2)  # a no-op for the usual short claim
            premise.truncate(self._text_budget - len(claim))
            encodings.append(self.tokenizer.post_process(premise, claim, add_special_tokens=True))
        return encodings

    @staticmethod
    def batch_inputs(encodings: Sequence[Encoding]) -> dict[str, np.ndarray]:
        """Right-padded int64 arrays named as the model's inputs. Padded positions are masked out, so the
        id they hold (0) does not matter."""
        width = max(len(encoding) for encoding in encodings)
        inputs = {name: np.zeros((len(encodings), width), np.int64) for name in MODEL_INPUTS}
        for row, encoding in enumerate(encodings):
            length = len(encoding)
            inputs["input_ids"][row, :length] = encoding.ids
            inputs["attention_mask"][row, :length] = 1
            inputs["token_type_ids"][row, :length] = encoding.type_ids
        return inputs
