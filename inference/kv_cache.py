"""Key/value caches allocated once for a batch of sequences, and snapshots of a shared prompt prefix.

The exported graph's GroupQueryAttention takes `past_key_values.N.*` and returns `present.N.*`; when
both are bound to the same buffer of shape (batch, kv_heads, capacity, head_size) it writes the new
positions in place and reads only the first `seqlens_k + 1` positions of each row (ONNX Runtime
detects the shared buffer by pointer equality). So the caches are allocated once at full capacity
and never copied or re-fed while they grow; a contiguous run of rows, bound as one view, is a batch.

The buffers live in host memory: the builds target the CPU, and GroupQueryAttention has no CUDA
kernel for FP32 activations, so it runs on the CPU whatever the execution provider.
"""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CacheLayout:
    """The shape of a model's KV cache and the graph names of its inputs and outputs (from genai_config)."""

    layers: int
    kv_heads: int
    head_size: int
    past_key: str
    past_value: str
    present_key: str
    present_value: str

    @classmethod
    def from_genai_config(cls, decoder: dict) -> "CacheLayout":
        return cls(
            layers=decoder["num_hidden_layers"],
            kv_heads=decoder["num_key_value_heads"],
            head_size=decoder["head_size"],
            past_key=decoder["inputs"]["past_key_names"],
            past_value=decoder["inputs"]["past_value_names"],
            present_key=decoder["outputs"]["present_key_names"],
            present_value=decoder["outputs"]["present_value_names"],
        )


@dataclass(frozen=True)
class PrefixCache:
    """The KV cache of a fixed prompt prefix (a system prompt), computed once and copied into sequences.

    keys[layer] and values[layer] have shape (1, kv_heads, len(token_ids), head_size).
    """

    token_ids: tuple[int, ...]
    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]

    def is_prefix_of(self, token_ids: list[int]) -> bool:
        """Whether a prompt starts with this prefix and goes on past it (the rest must be computed)."""
        return (
            len(token_ids) > len(self.token_ids) and tuple(token_ids[: len(self.token_ids)]) == self.token_ids
        )


class KVPool:
    """The keys and values of up to `rows` sequences: per layer a (rows, kv_heads, capacity, head_size)
    float32 buffer, one row per sequence.

    Rows carry no length of their own; the caller (runner.SequenceBatch) knows how many positions of
    each row are filled. np.zeros maps memory lazily, so unused rows and tails cost no RAM.
    """

    def __init__(self, layout: CacheLayout, rows: int, capacity: int) -> None:
        shape = (rows, layout.kv_heads, capacity, layout.head_size)
        self.keys = tuple(np.zeros(shape, np.float32) for _ in range(layout.layers))
        self.values = tuple(np.zeros(shape, np.float32) for _ in range(layout.layers))

    def load(self, row: int, prefix: PrefixCache) -> None:
        """Start `row` with a copy of a prefix's keys and values, in its first len(token_ids) positions."""
        count = len(prefix.token_ids)
        for buffer, cached in zip(self.keys + self.values, prefix.keys + prefix.values, strict=True):
            buffer[row, :, :count] = cached[0]

    def move(self, source: int, target: int, length: int) -> None:
        """Copy the first `length` positions of row `source` into row `target`."""
        for buffer in self.keys + self.values:
            buffer[target, :, :length] = buffer[source, :, :length]

    def snapshot(self, row: int, token_ids: list[int]) -> PrefixCache:
        """A copy of the first len(token_ids) positions of `row`, which must hold those tokens' cache."""
        count = len(token_ids)
        return PrefixCache(
            token_ids=tuple(token_ids),
            keys=tuple(buffer[row : row + 1, :, :count].copy() for buffer in self.keys),
            values=tuple(buffer[row : row + 1, :, :count].copy() for buffer in self.values),
        )


class PrefixCacheLRU:
    """The prefix caches of the most recently used system prompts, keyed by their token ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, ...], PrefixCache] = OrderedDict()

    def get(self, token_ids: tuple[int, ...]) -> PrefixCache | None:
        prefix = self._entries.get(token_ids)
        if prefix is not None:
            self._entries.move_to_end(token_ids)
        return prefix

    def put(self, prefix: PrefixCache) -> None:
        """Keep `prefix`, dropping the least recently used one when more than `capacity` are held."""
        self._entries[prefix.token_ids] = prefix
        self._entries.move_to_end(prefix.token_ids)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
