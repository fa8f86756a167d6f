"""The model runner: one ONNX Runtime session over one build, and forward passes over pre-allocated KV caches.

Sequences live in a SequenceBatch: a KV pool with a row per sequence, the attention mask and the
logits, allocated once. The active sequences hold the first rows, so a decode pass binds one view of
the first n rows and appends a token to every sequence at once. The weights are read once for all
rows, so a pass of 8 costs about 3 single-sequence passes on the 2-core dev CPU, not 8: that is where
concurrent throughput comes from. Prompts are appended one sequence at a time (`forward` on its own row): ONNX
Runtime's GroupQueryAttention takes several new tokens on top of a cache only at batch 1, and the
graph returns the logits of the last position only. Sampling, stop sequences and streaming live
above this, in sampling.py, generation.py and scheduler.py.
"""

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

from inference.kv_cache import CacheLayout, KVPool, PrefixCache
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


class BatchFull(RuntimeError):
    """A sequence was added to a batch whose rows are all taken."""


class Sequence:
    """One sequence: a row of a SequenceBatch and how many positions of it are filled.

    `row` changes when an earlier sequence leaves the batch (see SequenceBatch.remove).
    """

    def __init__(self, batch: "SequenceBatch", row: int) -> None:
        self.batch = batch
        self.row = row
        self.length = 0


class SequenceBatch:
    """Up to `rows` sequences decoded together: their KV pool, attention mask and logits buffer.

    `sequences[i]` holds row i, so the active sequences are always the first len(sequences) rows.
    A removed sequence's row is filled by moving the last sequence into it. Not thread-safe: one
    thread (the scheduler's) adds, removes and runs forward passes.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        layout: CacheLayout,
        rows: int,
        capacity: int,
        vocab_size: int,
    ) -> None:
        self._session = session
        self._layout = layout
        self.pool = KVPool(layout, rows, capacity)
        # A column per position a row can hold: 1 where filled. The graph derives each row's length
        # from its sum, and GroupQueryAttention reads only that many positions and takes the rotary
        # position of a decoded token from it, so rows of different lengths need no padding.
        self.attention_mask = np.zeros((rows, capacity), np.int64)
        self.logits = np.zeros((rows, 1, vocab_size), np.float32)
        self.sequences: list[Sequence] = []
        # IO bindings of row ranges, made on first use: a decode pass binds rows [0, n), a prefill
        # binds [i, i + 1). Each also keeps alive the OrtValues that wrap its views without copying.
        self._bindings: dict[tuple[int, int], tuple[ort.IOBinding, list[ort.OrtValue]]] = {}

    @property
    def rows(self) -> int:
        return self.attention_mask.shape[0]

    def add(self, prefix: PrefixCache | None = None) -> Sequence:
        """A new sequence in the first free row, empty or starting with `prefix`; raises BatchFull."""
        if len(self.sequences) == self.rows:
            raise BatchFull(f"all {self.rows} rows of the batch hold sequences")
        sequence = Sequence(self, len(self.sequences))
        # The row may hold a departed sequence's keys; clearing its mask is what makes it empty.
        self.attention_mask[sequence.row] = 0
        if prefix is not None:
            self.pool.load(sequence.row, prefix)
            sequence.length = len(prefix.token_ids)
            self.attention_mask[sequence.row, : sequence.length] = 1
        self.sequences.append(sequence)
        return sequence

    def remove(self, sequence: Sequence) -> None:
        """Free `sequence`'s row, moving the last sequence into it to keep the active rows contiguous."""
        last = self.sequences.pop()
        if last is not sequence:
            self.pool.move(last.row, sequence.row, last.length)
            self.attention_mask[sequence.row] = self.attention_mask[last.row]
            last.row = sequence.row
            self.sequences[last.row] = last

    def binding(self, start: int, stop: int) -> ort.IOBinding:
        """The IO binding of rows [start, stop): their KV caches (in and out) and their logits."""
        if (start, stop) not in self._bindings:
            binding, bound = self._session.io_binding(), []
            layout = self._layout
            for layer in range(layout.layers):
                for name_in, name_out, buffer in (
                    (layout.past_key, layout.present_key, self.pool.keys[layer]),
                    (layout.past_value, layout.present_value, self.pool.values[layer]),
                ):
                    value = ort.OrtValue.ortvalue_from_numpy(buffer[start:stop])
                    binding.bind_ortvalue_input(name_in % layer, value)
                    binding.bind_ortvalue_output(name_out % layer, value)
                    bound.append(value)
            logits = ort.OrtValue.ortvalue_from_numpy(self.logits[start:stop])
            binding.bind_ortvalue_output("logits", logits)
            bound.append(logits)
            self._bindings[start, stop] = (binding, bound)
        return self._bindings[start, stop][0]


class ModelRunner:
    """Runs one built generator: creates batches of sequences and appends tokens to them.

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

    def new_batch(self, rows: int) -> SequenceBatch:
        """An empty batch of up to `rows` sequences of `context_length` positions each."""
        return SequenceBatch(self.session, self.layout, rows, self.context_length, self.vocab_size)

    def new_sequence(self, prefix: PrefixCache | None = None) -> Sequence:
        """A sequence on its own (a batch of one), empty or starting with `prefix`."""
        return self.new_batch(1).add(prefix)

    def forward(self, sequence: Sequence, token_ids: list[int]) -> np.ndarray:
        """Append `token_ids` to one sequence (prefill or decode) and return the next-token logits (1-D).

        The other sequences of its batch are untouched. Raises ContextLengthExceeded, leaving the
        sequence unchanged, when the tokens do not fit.
        """
        if not token_ids:
            raise ValueError("forward needs at least one token")
        start, end = sequence.length, sequence.length + len(token_ids)
        if end > self.context_length:
            raise ContextLengthExceeded(
                f"{end} tokens do not fit in the context of {self.context_length} tokens"
            )
        batch, row = sequence.batch, sequence.row
        batch.attention_mask[row, start:end] = 1
        self._run(batch, row, row + 1, np.array([token_ids], np.int64))
        sequence.length = end
        return batch.logits[row, -1].copy()

    def decode(self, batch: SequenceBatch, token_ids: list[int]) -> np.ndarray:
        """Append one token to every sequence of `batch` in one pass; returns their next-token logits.

        `token_ids[i]` goes to the sequence in row i (`batch.sequences[i]`); row i of the result,
        shape (len(batch.sequences), vocab_size), is its logits. Raises ContextLengthExceeded, leaving
        the batch unchanged, when a sequence is full.
        """
        sequences = batch.sequences
        if len(token_ids) != len(sequences) or not sequences:
            raise ValueError(f"{len(token_ids)} tokens for a batch of {len(sequences)} sequences")
        if any(sequence.length == self.context_length for sequence in sequences):
            raise ContextLengthExceeded(
                f"a sequence already holds the {self.context_length} tokens of its context"
            )
        for sequence in sequences:
            batch.attention_mask[sequence.row, sequence.length] = 1
        self._run(batch, 0, len(sequences), np.array(token_ids, np.int64).reshape(-1, 1))
        for sequence in sequences:
            sequence.length += 1
        return batch.logits[: len(sequences), -1].copy()

    def _run(self, batch: SequenceBatch, start: int, stop: int, input_ids: np.ndarray) -> None:
        binding = batch.binding(start, stop)
        binding.bind_cpu_input("input_ids", input_ids)
        # Bound again on every call: an input bound once may be copied to the device at bind time,
        # and the mask changes between calls.
        binding.bind_cpu_input("attention_mask", batch.attention_mask[start:stop])
        self.session.run_with_iobinding(binding)

    def prefix_cache(self, token_ids: list[int]) -> PrefixCache:
        """Compute the KV cache of a fixed prompt prefix once, to start many sequences from it."""
        sequence = self.new_sequence()
        self.forward(sequence, token_ids)
        return sequence.batch.pool.snapshot(sequence.row, token_ids)


def _providers() -> list[str]:
    """CUDA first when this onnxruntime has it and the machine has an NVIDIA device, else the CPU.

    onnxruntime-gpu lists CUDA as available even on machines without a GPU; asking for it there only
    produces load errors before falling back, hence the device check.
    """
    if "CUDAExecutionProvider" in ort.get_available_providers() and Path("/dev/nvidiactl").exists():
        # CUDA and cuDNN from their pip packages (onnxruntime-gpu[cuda,cudnn], the CUDA engine
        # image), which are not on the loader's path; libraries installed system-wide need none.
        ort.preload_dlls()
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
