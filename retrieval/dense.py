"""Nearest passages by embedding: pgvector's HNSW index (cosine), filtered to the readable scopes.

The scope filter is part of the query. HNSW alone would find the nearest passages of the whole
index and then drop the unreadable ones, leaving fewer than k; pgvector's iterative scan keeps
walking the graph until k readable passages are found. When the readable passages are few, an
exact scan of just those is both faster and exact, so small scopes are searched that way.
"""

from django.conf import settings
from django.db.models import Sum

from retrieval.models import ScopeStats
from retrieval.statements import limited_cursor


def readable_passages(scopes: list[int]) -> int:
    return ScopeStats.objects.filter(scope__in=scopes).aggregate(n=Sum("passages"))["n"] or 0


def dense_top_k(
    vector: list[float],
    *,
    scopes: list[int],
    k: int,
    model: str | None = None,
    exact: bool | None = None,
    ef_search: int | None = None,
) -> list[tuple[int, float]]:
    """(passage id, cosine similarity) of the k nearest passages in `scopes`, nearest first.

    `model`, the one that embedded `vector`: nothing is found unless the stored vectors come from it
    too, checked in the same statement, so a swap of models (reembedding.finish) committing in
    between cannot pair a query with vectors of another model. `exact` None decides by the number
    of readable passages (RETRIEVAL_EXACT_DENSE_LIMIT).
    """
    if not scopes or k <= 0:
        return []
    if exact is None:
        exact = readable_passages(scopes) <= settings.RETRIEVAL_EXACT_DENSE_LIMIT
    with limited_cursor() as cursor:
        if exact:
            # Without index scans the planner filters by scope (bitmap scan) and sorts by distance.
            cursor.execute("SET LOCAL enable_indexscan = off")
        else:
            ef_search = max(ef_search or settings.RETRIEVAL_EF_SEARCH, k)
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
            cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        same_model = "" if model is None else " AND (SELECT model FROM retrieval_embeddingstate) = %s"
        cursor.execute(
            "SELECT id, embedding <=> %s::vector AS distance FROM retrieval_passage"
            f" WHERE scope = ANY(%s) AND embedding IS NOT NULL{same_model} ORDER BY distance LIMIT %s",
            [_literal(vector), list(scopes), *([model] if model else []), k],
        )
        rows = cursor.fetchall()
    # A relaxed-order scan may return neighbours slightly out of order.
    rows.sort(key=lambda row: (row[1], row[0]))
    return [(passage_id, 1.0 - distance) for passage_id, distance in rows]


def _literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(value)) for value in vector) + "]"
