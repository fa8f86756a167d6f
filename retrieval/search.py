"""The one search function behind the API, the staff UI, answering and the commands.

`search` takes the scopes the caller may read (kb decides them) and never looks outside them:
BM25 statistics, the vector scan and the cache key are all restricted to those scopes.
"""

import re
import unicodedata
from dataclasses import dataclass

from django.conf import settings

from retrieval import cache
from retrieval.bm25 import bm25_top_k
from retrieval.dense import dense_top_k
from retrieval.embedding import embed_query, embedding_model
from retrieval.errors import InvalidQuery, SearchTooCostly
from retrieval.fusion import reciprocal_rank_fusion, weighted_fusion
from retrieval.reembedding import active_model
from retrieval.tokenizer import query_language, search_tokens

__all__ = ["Hit", "InvalidQuery", "SearchTooCostly", "normalise_query", "search"]

MODES = ("hybrid", "bm25", "dense")
FUSIONS = ("rrf", "weighted")
MAX_K = 100
WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Hit:
    passage_id: int
    score: float
    bm25_rank: int | None  # 1-based rank among the BM25 candidates, None when not among them
    dense_rank: int | None


def normalise_query(query: str) -> str:
    """NFKC and single spaces; raises InvalidQuery for an empty or overlong query."""
    if not isinstance(query, str):
        raise InvalidQuery("the query must be text")
    query = WHITESPACE.sub(" ", unicodedata.normalize("NFKC", query)).strip()
    if not query:
        raise InvalidQuery("the query is empty")
    limit = settings.RETRIEVAL_MAX_QUERY_CHARS
    if len(query) > limit:
        raise InvalidQuery(f"the query is {len(query):,} characters long; the limit is {limit:,}")
    return query


def search(
    query: str, *, scopes: list[int], mode: str = "hybrid", k: int = 10, fusion: str | None = None
) -> list[Hit]:
    """The k best passages for `query` among the passages of `scopes`, best first.

    A query of only stop words or punctuation finds nothing (it has nothing to match on).
    """
    query = normalise_query(query)
    if mode not in MODES:
        raise InvalidQuery(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
    fusion = fusion or settings.RETRIEVAL_FUSION
    if fusion not in FUSIONS:
        raise InvalidQuery(f"unknown fusion {fusion!r}; use one of {', '.join(FUSIONS)}")
    if not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidQuery(f"k must be a whole number from 1 to {MAX_K}")
    if not scopes or not search_tokens(query):
        return []
    parameters = {
        "query": query.casefold(),
        "mode": mode,
        "k": k,
        "fusion": fusion,
        "weights": [settings.RETRIEVAL_BM25_WEIGHT, settings.RETRIEVAL_DENSE_WEIGHT],
        "candidates": settings.RETRIEVAL_CANDIDATES,
        # No embedding model: a swap of models renews every scope's version (reembedding.finish),
        # and a cache hit must not need the database to say which model is in use.
    }
    key = cache.result_key(parameters, scopes)
    hits = cache.get(key)
    if hits is None:
        hits = _search(query, scopes=scopes, mode=mode, k=k, fusion=fusion)
        cache.put(key, hits)
    return hits


def _dense_weight(query: str, model: str) -> float:
    """The dense share of a fused ranking; none for a query in a language the embedding model does
    not know (all-MiniLM-L6-v2 and Chinese: on shared/eval/dev it only pulls good BM25 hits down)."""
    if query_language(query) not in embedding_model(model).languages:
        return 0.0
    return settings.RETRIEVAL_DENSE_WEIGHT


def _search(query: str, *, scopes: list[int], mode: str, k: int, fusion: str) -> list[Hit]:
    depth = max(k, settings.RETRIEVAL_CANDIDATES)
    model = active_model()
    dense_weight = _dense_weight(query, model) if mode == "hybrid" else 1.0
    lexical = bm25_top_k(query, scopes=scopes, k=depth) if mode in ("hybrid", "bm25") else []
    semantic = (
        dense_top_k(embed_query(model, query), scopes=scopes, k=depth, model=model)
        if mode == "dense" or (mode == "hybrid" and dense_weight > 0)
        else []
    )
    if mode == "bm25" or not semantic:
        ranked = lexical
    elif mode == "dense":
        ranked = semantic
    else:
        fuse = reciprocal_rank_fusion if fusion == "rrf" else weighted_fusion
        ranked = fuse([lexical, semantic], [settings.RETRIEVAL_BM25_WEIGHT, dense_weight])
    bm25_ranks = {passage_id: rank for rank, (passage_id, _) in enumerate(lexical, start=1)}
    dense_ranks = {passage_id: rank for rank, (passage_id, _) in enumerate(semantic, start=1)}
    return [
        Hit(passage_id, score, bm25_ranks.get(passage_id), dense_ranks.get(passage_id))
        for passage_id, score in ranked[:k]
    ]
