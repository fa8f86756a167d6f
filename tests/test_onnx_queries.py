"""Query vectors from the ONNX export equal sentence-transformers' passage vectors of the same text."""

import numpy as np
import pytest

from retrieval.embedding import embed_passages, embedding_model
from retrieval.onnx_queries import OnnxQueryEncoder

TEXTS = [
    "Who approves annual leave requests?",
    "年假审批由谁负责？",
    "ISO-9001 clause 7.5.3 " * 200,  # beyond the model's 256 word pieces: cut like sentence-transformers
    "",
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """Exported afresh into an empty model cache, as on a new machine."""
    directory = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.conf.settings.KB_MODELS_DIR", directory)
        encoder = OnnxQueryEncoder(embedding_model("all-MiniLM-L6-v2"))
    assert [path.name for path in (directory / "query-encoders").iterdir()] == ["all-MiniLM-L6-v2-0.1.0.onnx"]
    return encoder


@pytest.mark.parametrize("text", TEXTS)
def test_query_vectors_equal_sentence_transformers(encoder, text):
    expected = embed_passages("all-MiniLM-L6-v2", [text])[0]
    assert np.allclose(encoder.embed(text), expected, atol=1e-6)
    assert np.linalg.norm(encoder.embed(text)) == pytest.approx(1.0)
