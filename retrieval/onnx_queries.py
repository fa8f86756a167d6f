"""Query embeddings with ONNX Runtime for sentence-transformers models.

A search embeds one short query, and for that PyTorch's per-operation overhead is most of the time:
all-MiniLM-L6-v2 took 19 ms for a dozen word pieces on this project's 2-core host, its export to
ONNX 5 ms. The transformer is exported once per machine (about 2 s, on first use) into the model
cache; tokenizing, mean pooling and normalising are sentence-transformers' own steps, so the
vectors equal `embed_passages` ones (tests: to 1e-6) and existing passage vectors stay valid.
"""

import json
import os
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np
import onnxruntime as ort
from django.conf import settings

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxQueryEncoder:
    def __init__(self, model):
        pooling = json.loads((model.path / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise ValueError(f"{model.name} does not pool by mean; only mean pooling is exported")
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model.path / "tokenizer.json"))
        self.tokenizer.enable_truncation(model.max_tokens)
        self.tokenizer.no_padding()
        # Named with the package's version, so that upgraded weights are exported anew.
        exported = f"{model.name}-{version(model.package)}.onnx"
        path = Path(settings.KB_MODELS_DIR) / "query-encoders" / exported
        if not path.exists():
            _export(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one short sequence: more threads only add hand-offs
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, text: str) -> list[float]:
        ids = np.array([self.tokenizer.encode(text).ids], dtype=np.int64)
        # One unpadded sequence: every position is attended to, and mean pooling is a plain mean.
        inputs = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        pooled = self.session.run(None, inputs)[0][0].mean(axis=0)
        return (pooled / max(np.linalg.norm(pooled), 1e-12)).tolist()


def _export(model, path: Path) -> None:
    """Write the model's transformer as ONNX; written beside and renamed, so that processes
    exporting at the same time never read a half-written file."""
    import torch
    from sentence_transformers import SentenceTransformer

    transformer = SentenceTransformer(str(model.path), device="cpu")[0].auto_model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = tuple(torch.ones((1, 8), dtype=torch.int64) for _ in INPUTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    os.close(handle)
    try:
        torch.onnx.export(
            LastHiddenState(),
            example,
            partial,
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")},
            opset_version=17,
            dynamo=False,
        )
        os.chmod(partial, 0o644)  # mkstemp's file is private; the model is for every process
        os.replace(partial, path)
    finally:
        Path(partial).unlink(missing_ok=True)
