"""How well a passage supports a claim, from the shipped INT8 entailment cross-encoder in ONNX Runtime.

    model = EntailmentModel.load()
    model.support_probabilities([(passage, claim), ...])  # → [P(supported), ...]
    supported = probability >= model.threshold

The model and its manifest (data, settings, dev scores, threshold) live in `model/`, written by
`python -m inference.factcheck.train`.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference.factcheck.encoding import PairEncoder

MODEL_DIR = Path(__file__).parent / "model"
INT8_MODEL_FILE = "model_int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"

# Pairs per ONNX Runtime call, by execution provider. On a CPU one pair per call is fastest (nothing is
# padded; measured 1.5x faster than 32) and keeps each score independent of the other pairs (INT8
# activations share one quantization scale per call). A GPU needs batches to be kept busy; there, pairs
# are sorted by length first so that a batch pads little.
BATCH_SIZES = {"CUDAExecutionProvider": 32, "CPUExecutionProvider": 1}


def read_manifest(model_dir: Path = MODEL_DIR) -> dict:
    return json.loads((model_dir / MANIFEST_FILE).read_text())


class EntailmentModel:
    """A cross-encoder scoring (premise, claim) pairs: the probability that the premise supports the claim."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        *,
        max_length: int,
        threshold: float = 0.5,
        threads: int | None = None,
        batch_size: int | None = None,
    ):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=execution_providers())
        self.input_names = {model_input.name for model_input in self.session.get_inputs()}
        self.encoder = PairEncoder(tokenizer_path, max_length=max_length)
        self.threshold = threshold
        self.batch_size = batch_size or BATCH_SIZES[self.session.get_providers()[0]]

    @classmethod
    def load(cls, model_dir: Path = MODEL_DIR, *, threads: int | None = None) -> "EntailmentModel":
        """The INT8 model in `model_dir`, with the window and threshold its manifest records."""
        manifest = read_manifest(model_dir)
        return cls(
            model_dir / manifest["onnx"]["file"],
            model_dir / TOKENIZER_FILE,
            max_length=manifest["settings"]["max_length"],
            threshold=manifest["threshold"],
            threads=threads,
        )

    def support_probabilities(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """P(supported) for each (premise, claim) pair, in order. A premise too long for the window is cut
        at its end; the claim is kept."""
        if not pairs:
            return []
        encodings = self.encoder.encode(pairs)
        by_length = sorted(range(len(encodings)), key=lambda index: len(encodings[index]))
        probabilities = np.empty(len(encodings), np.float64)
        for start in range(0, len(by_length), self.batch_size):
            batch = by_length[start : start + self.batch_size]
            inputs = PairEncoder.batch_inputs([encodings[index] for index in batch])
            feed = {name: array for name, array in inputs.items() if name in self.input_names}
            logits = self.session.run(["logits"], feed)[0][:, 0]
            probabilities[batch] = 1 / (1 + np.exp(-logits.astype(np.float64)))
        return probabilities.tolist()


def execution_providers() -> list[str]:
    """CUDA first when this onnxruntime has it and the machine has an NVIDIA device, else the CPU (the same
    rule as inference.runner: onnxruntime-gpu lists CUDA even where there is no GPU)."""
    if "CUDAExecutionProvider" in ort.get_available_providers() and Path("/dev/nvidiactl").exists():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]
