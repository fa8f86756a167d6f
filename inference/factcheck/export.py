"""The fine-tuned PyTorch model → ONNX (FP32) → ONNX with INT8 weights (dynamic quantization)."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from inference.factcheck.cross_encoder import AlignmentCrossEncoder
from inference.factcheck.encoding import MODEL_INPUTS

ONNX_OPSET = 17

QUANTIZATION = (
    "dynamic (onnxruntime quantize_dynamic): unsigned INT8 weights per output channel, every MatMul"
)

# Largest difference in logits allowed between PyTorch and its FP32 export: both compute the same sums,
# in a different order, and agree to ~1e-5.
EXPORT_TOLERANCE = 1e-3


class ExportError(RuntimeError):
    """The exported graph does not compute what the PyTorch model computes."""


def export_fp32(model: AlignmentCrossEncoder, sample_inputs: dict[str, np.ndarray], path: Path) -> None:
    """Trace `model` on `sample_inputs` into an ONNX graph with a dynamic batch size and length, and check
    that it gives PyTorch's logits on them."""
    tensors = tuple(torch.from_numpy(sample_inputs[name]) for name in MODEL_INPUTS)
    dynamic_axes = {name: {0: "batch", 1: "length"} for name in MODEL_INPUTS} | {"logits": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(
            model,
            tensors,
            str(path),
            input_names=list(MODEL_INPUTS),
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=ONNX_OPSET,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript, not installed here
        )
        expected = model(*tensors).numpy()
    exported = _onnx_logits(path, sample_inputs)
    difference = float(np.max(np.abs(exported - expected)))
    if difference > EXPORT_TOLERANCE:
        raise ExportError(f"{path} differs from PyTorch by {difference:.2e} in the logits")


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """INT8 weights for every MatMul (activations quantized per call), about a quarter of the FP32 size.

    Unsigned weights with one scale per output channel: of the signed/unsigned, per-tensor/per-channel
    and reduced-range variants, this one stayed closest to the FP32 logits on dev pairs (AVX2 CPUs
    without VNNI can also saturate the u8×s8 sums that signed weights use).
    """
    quantize_dynamic(fp32_path, int8_path, weight_type=QuantType.QUInt8, per_channel=True)


def _onnx_logits(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], inputs)[0]
