"""The model runner: one ONNX Runtime session over one build, and forward passes over pre-allocated KV caches.

A sequence's buffers (KV cache, attention mask, logits) are bound to the session once, through an
IO binding; each forward pass then only binds the new token ids. Prefill and decode are the same
call: `forward` appends any number of tokens to a sequence and returns the logits of the last one.
Sampling, stop sequences and streaming live above this, in sampling.py and generation.py.
"""

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from inference.kv_cache import CacheLayout, KVCache, PrefixCache
from inference.model_store import InvalidBuild, read_manifest

logger = logging.getLogger(__name__)

# Tokens one sequence may hold (prompt plus completion) unless the caller asks otherwise. The answer
# prompt is ~600-1,000 tokens and answers are short; KV memory is committed only as it fills
# (Qwen 0.5B: 24 KB a token, so 100 MB for a full 4,096).
DEFAULT_CONTEXT_TOKENS = 4096

# ONNX Runtime's own errors when a model file is unreadable; they do not derive from one base class.
_MODEL_LOAD_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidProtobuf,
    ort_errors.InvalidGraph,
    ort_errors.NoSuchFile,
)


class ContextLengthExceeded(ValueError):
    """More tokens than a sequence's context holds; the message gives both numbers."""


class Sequence:
    """One sequence's state in a runner: its KV cache and the IO binding that points the graph at it."""

    def __init__(
        self, session: ort.InferenceSession, layout: CacheLayout, capacity: int, vocab_size: int
    ) -> None:
        self.cache = KVCache(layout, capacity)
        # A column per position the cache can hold: 1 where filled. The graph derives each row's
        # length from its sum, and GroupQueryAttention reads only that many positions.
        self.attention_mask = np.zeros((1, capacity), np.int64)
        self.logits = np.zeros((1, 1, vocab_size), np.float32)
        self.binding = session.io_binding()
        # The OrtValues wrap the numpy buffers without copying; keeping them here keeps them alive.
        self._bound = []
        for layer in range(layout.layers):
            for name_in, name_out, buffer in (
                (layout.past_key, layout.present_key, self.cache.keys[layer]),
                (layout.past_value, layout.present_value, self.cache.values[layer]),
            ):
                value = ort.OrtValue.ortvalue_from_numpy(buffer)
                self.binding.bind_ortvalue_input(name_in % layer, value)
                self.binding.bind_ortvalue_output(name_out % layer, value)
                self._bound.append(value)
        logits = ort.OrtValue.ortvalue_from_numpy(self.logits)
        self.binding.bind_ortvalue_output("logits", logits)
        self._bound.append(logits)

    @property
    def length(self) -> int:
        return self.cache.length

    def load(self, prefix: PrefixCache) -> None:
        self.cache.load(prefix)
        self.attention_mask[0, : self.cache.length] = 1


class ModelRunner:
    """Runs one built generator: creates sequences and appends tokens to them, one sequence per call.

    Uses the CUDA execution provider when onnxruntime-gpu finds a GPU, else the CPU, and logs which.
    Raises InvalidBuild when the build is incomplete or its model file cannot be loaded.
    """

    def __init__(self, build_dir: Path, *, context_length: int = DEFAULT_CONTEXT_TOKENS) -> None:
        self.manifest = read_manifest(build_dir)
        model = json.loads((build_dir / "genai_config.json").read_text())["model"]
        self.layout = CacheLayout.from_genai_config(model["decoder"])
        self.vocab_size = model["vocab_size"]
        self.context_length = min(context_length, model["context_length"])
        model_path = build_dir / "model.onnx"
        try:
            self.session = ort.InferenceSession(str(model_path), providers=_providers())
        except _MODEL_LOAD_ERRORS as error:
            raise InvalidBuild(
                f"{model_path} cannot be loaded ({error}); check the build with "
                f"`python -m inference.build {self.manifest['model']} --verify`"
            ) from error
        self.execution_provider = self.session.get_providers()[0]
        logger.info(
            "loaded %s %s %s on %s",
            self.manifest["model"],
            self.manifest["version"],
            self.manifest["precision"],
            self.execution_provider,
        )

    def new_sequence(self, prefix: PrefixCache | None = None) -> Sequence:
        """An empty sequence with a KV cache of `context_length` positions, or one starting with `prefix`."""
        sequence = Sequence(self.session, self.layout, self.context_length, self.vocab_size)
        if prefix is not None:
            sequence.load(prefix)
        return sequence

    def forward(self, sequence: Sequence, token_ids: list[int]) -> np.ndarray:
        """Append `token_ids` to `sequence` (prefill or decode) and return the next-token logits (1-D).

        Raises ContextLengthExceeded, leaving the sequence unchanged, when they do not fit.
        """
        if not token_ids:
            raise ValueError("forward needs at least one token")
        start, end = sequence.length, sequence.length + len(token_ids)
        if end > self.context_length:
            raise ContextLengthExceeded(
                f"{end} tokens do not fit in the context of {self.context_length} tokens"
            )
        sequence.attention_mask[0, start:end] = 1
        sequence.binding.bind_cpu_input("input_ids", np.array([token_ids], np.int64))
        # Bound again on every call: an input bound once may be copied to the device at bind time,
        # and the mask changes between calls.
        sequence.binding.bind_cpu_input("attention_mask", sequence.attention_mask)
        self.session.run_with_iobinding(sequence.binding)
        sequence.cache.length = end
        return sequence.logits[0, -1].copy()

    def prefix_cache(self, token_ids: list[int]) -> PrefixCache:
        """Compute the KV cache of a fixed prompt prefix once, to start many sequences from it."""
        sequence = self.new_sequence()
        self.forward(sequence, token_ids)
        return sequence.cache.snapshot(token_ids)


def _providers() -> list[str]:
    """CUDA first when this onnxruntime has it and the machine has an NVIDIA device, else the CPU.

    onnxruntime-gpu lists CUDA as available even on machines without a GPU; asking for it there only
    produces load errors before falling back, hence the device check.
    """
    if "CUDAExecutionProvider" in ort.get_available_providers() and Path("/dev/nvidiactl").exists():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
