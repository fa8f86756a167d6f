"""Generating a completion for one prompt as a stream of chunks: sampling, stop sequences, limits.

TokenStream turns each step's logits into the next chunk and decides when a completion ends;
`generate` drives one on a sequence of its own, the scheduler drives many over one decode batch.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from inference.chat import ChatTokenizer
from inference.kv_cache import PrefixCache
from inference.runner import ModelRunner
from inference.sampling import Sampler, SamplingParams

# Finish reasons, as the OpenAI API names them.
STOP = "stop"
LENGTH = "length"


@dataclass(frozen=True)
class Chunk:
    """One generated token and the text it makes safe to show (possibly empty); the last chunk says why."""

    token_id: int
    text: str
    finish_reason: str | None = None


class CompletionText:
    """Turns generated token ids into text deltas, cutting at the first stop sequence.

    Text is held back while it could still be the start of a stop sequence, or while its last token
    ends in the middle of a multi-byte character, so that a client never sees text it must retract.
    """

    def __init__(self, tokenizer: ChatTokenizer, stop: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._stop = stop
        self._token_ids: list[int] = []
        self._shown = 0

    def add(self, token_id: int) -> tuple[str, bool]:
        """The new text to show after `token_id`, and whether a stop sequence ended the completion."""
        self._token_ids.append(token_id)
        # Decoding everything again is simplest and correct across token boundaries; completions are
        # a few hundred tokens, where this costs well under a millisecond a token.
        text = self._tokenizer.decode(self._token_ids)
        stops = [index for index in (text.find(stop) for stop in self._stop) if index >= 0]
        if stops:
            return self._show(text, max(min(stops), self._shown)), True
        if text.endswith("\ufffd"):
            return "", False
        return self._show(text, len(text) - self._possible_stop_start(text)), False

    def rest(self) -> str:
        """Text held back so far, to show when the completion ends for a reason other than a stop sequence."""
        text = self._tokenizer.decode(self._token_ids)
        return self._show(text, len(text))

    def _show(self, text: str, end: int) -> str:
        delta = text[self._shown : end]
        self._shown = max(self._shown, end)
        return delta

    def _possible_stop_start(self, text: str) -> int:
        """Length of the longest end of `text` that begins some stop sequence."""
        return max(
            (size for stop in self._stop for size in range(1, len(stop)) if text.endswith(stop[:size])),
            default=0,
        )


class TokenStream:
    """One completion's progress: picks each token from the logits and says when the completion ends.

    It ends with finish reason "stop" at an end-of-sequence token or a stop sequence (neither is part
    of the text), and "length" at max_tokens or when the sequence's context is full.
    """

    def __init__(self, tokenizer: ChatTokenizer, params: SamplingParams) -> None:
        self._sampler = Sampler(params)
        self._text = CompletionText(tokenizer, params.stop)
        self._eos_token_ids = tokenizer.eos_token_ids
        self._max_tokens = params.max_tokens
        self._count = 0

    def next_chunk(self, logits: np.ndarray, *, context_full: bool) -> Chunk:
        """The chunk of the token picked from `logits` (1-D); `context_full` when it cannot be appended."""
        token_id = self._sampler(logits)
        self._count += 1
        if token_id in self._eos_token_ids:
            return Chunk(token_id, self._text.rest(), STOP)
        delta, stopped = self._text.add(token_id)
        if stopped:
            return Chunk(token_id, delta, STOP)
        if self._count == self._max_tokens or context_full:
            return Chunk(token_id, delta + self._text.rest(), LENGTH)
        return Chunk(token_id, delta)


def generate(
    runner: ModelRunner,
    tokenizer: ChatTokenizer,
    prompt_ids: list[int],
    params: SamplingParams,
    *,
    prefix: PrefixCache | None = None,
) -> Iterator[Chunk]:
    """Stream the completion of `prompt_ids` on a sequence of its own, one chunk per generated token.

    The last chunk has a finish reason (see TokenStream). A `prefix` whose tokens start the prompt is
    copied in instead of being computed again. Raises ContextLengthExceeded when the prompt alone does
    not fit.
    """
    stream = TokenStream(tokenizer, params)
    usable_prefix = prefix if prefix is not None and prefix.is_prefix_of(prompt_ids) else None
    sequence = runner.new_sequence(usable_prefix)
    logits = runner.forward(sequence, prompt_ids[sequence.length :])
    while True:
        chunk = stream.next_chunk(logits, context_full=sequence.length == runner.context_length)
        yield chunk
        if chunk.finish_reason is not None:
            return
        logits = runner.forward(sequence, [chunk.token_id])
