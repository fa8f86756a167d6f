"""Generating a completion for one prompt as a stream of chunks: sampling, stop sequences, limits.

This is the single-sequence loop on top of the runner; the scheduler will drive the same pieces
(Sampler, CompletionText) for many sequences at once.
"""

from collections.abc import Iterator
from dataclasses import dataclass

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


def generate(
    runner: ModelRunner,
    tokenizer: ChatTokenizer,
    prompt_ids: list[int],
    params: SamplingParams,
    *,
    prefix: PrefixCache | None = None,
) -> Iterator[Chunk]:
    """Stream the completion of `prompt_ids`, one chunk per generated token.

    Ends with finish reason "stop" at an end-of-sequence token or a stop sequence (neither is part of
    the text), and "length" at max_tokens or when the context is full. A `prefix` whose tokens start
    the prompt is copied in instead of being computed again. Raises ContextLengthExceeded when the
    prompt alone does not fit.
    """
    sampler = Sampler(params)
    text = CompletionText(tokenizer, params.stop)
    usable_prefix = prefix if prefix is not None and prefix.is_prefix_of(prompt_ids) else None
    sequence = runner.new_sequence(usable_prefix)
    logits = runner.forward(sequence, prompt_ids[sequence.length :])
    for count in range(1, params.max_tokens + 1):
        token_id = sampler(logits)
        if token_id in tokenizer.eos_token_ids:
            yield Chunk(token_id, text.rest(), STOP)
            return
        delta, stopped = text.add(token_id)
        if stopped:
            yield Chunk(token_id, delta, STOP)
            return
        if count == params.max_tokens or sequence.length == runner.context_length:
            yield Chunk(token_id, delta + text.rest(), LENGTH)
            return
        yield Chunk(token_id, delta)
        logits = runner.forward(sequence, [token_id])
