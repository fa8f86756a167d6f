"""Choosing the next token from logits: greedy, or sampled with temperature and nucleus (top-p) filtering."""

from dataclasses import dataclass

import numpy as np

# Nucleus sampling first looks at this many most likely tokens, which almost always hold the top-p mass;
# only when they do not does it sort the whole vocabulary (150k entries for Qwen, ~10 ms a token here).
NUCLEUS_CANDIDATES = 256


class InvalidSamplingParams(ValueError):
    """Sampling parameters a client sent that cannot be honoured; the message says which and why."""


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens and when to stop, in the OpenAI chat-completions sense.

    temperature 0 means greedy decoding. `seed` makes sampling reproducible; without it each request
    draws fresh randomness. `stop` strings end the completion and are not part of it.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidSamplingParams(f"temperature must be between 0 and 2, not {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidSamplingParams(f"top_p must be greater than 0 and at most 1, not {self.top_p}")
        if self.max_tokens < 1:
            raise InvalidSamplingParams(f"max_tokens must be at least 1, not {self.max_tokens}")
        if any(not stop for stop in self.stop):
            raise InvalidSamplingParams("stop sequences must not be empty")


class Sampler:
    """Picks tokens for one sequence; holds the random state so a seeded sequence is reproducible."""

    def __init__(self, params: SamplingParams) -> None:
        self._temperature = params.temperature
        self._top_p = params.top_p
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray) -> int:
        """The next token id given the logits over the vocabulary (1-D)."""
        if self._temperature == 0.0:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / self._temperature
        probabilities = np.exp(scaled - scaled.max())
        probabilities /= probabilities.sum()
        candidates = nucleus(probabilities, self._top_p)
        weights = probabilities[candidates] / probabilities[candidates].sum()
        return int(candidates[self._rng.choice(len(candidates), p=weights)])


def nucleus(probabilities: np.ndarray, top_p: float) -> np.ndarray:
    """Token ids of the smallest most-likely set whose probability reaches `top_p`, most likely first."""
    if top_p >= 1.0:
        return np.flatnonzero(probabilities > 0.0)
    count = min(NUCLEUS_CANDIDATES, probabilities.size)
    head = np.argpartition(probabilities, -count)[-count:]
    order = head[np.argsort(-probabilities[head], kind="stable")]
    if probabilities[order].sum() < top_p:
        order = np.argsort(-probabilities, kind="stable")
    cumulative = np.cumsum(probabilities[order])
    keep = int(np.searchsorted(cumulative, top_p)) + 1
    return order[:keep]
