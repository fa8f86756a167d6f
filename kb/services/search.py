"""Search as a user: the collections they may read become the scopes of `retrieval.search`.

Every surface (API, staff UI, answering, the `search` command) calls `search_chunks`, so the
access rule lives here once. A collection the user may not read is reported exactly like one
that does not exist, so nobody learns of collections they are not meant to see.
"""

from dataclasses import dataclass

from kb.models import Chunk
from kb.selectors import current_chunks, readable_collections
from retrieval.search import Hit, InvalidQuery, search


class UnknownCollection(InvalidQuery):
    pass


@dataclass(frozen=True)
class Result:
    chunk: Chunk  # with version, document and collection loaded
    score: float
    bm25_rank: int | None
    dense_rank: int | None


def search_scopes(user, collections: list[str] | None = None) -> list[int]:
    """Ids of the collections to search: the named ones (all readable ones when None)."""
    readable = dict(readable_collections(user).values_list("name", "pk"))
    if collections is None:
        return sorted(readable.values())
    unknown = [name for name in collections if name not in readable]
    if unknown:
        raise UnknownCollection(f"no collection named {unknown[0]!r}")
    return sorted({readable[name] for name in collections})


def search_chunks(
    user, query: str, *, collections: list[str] | None = None, mode: str = "hybrid", k: int = 10
) -> list[Result]:
    """The user's k best chunks for `query`, best first; raises InvalidQuery with a reason."""
    scopes = search_scopes(user, collections)
    hits = search(query, scopes=scopes, mode=mode, k=k)
    return chunks_for(hits, scopes)


def chunks_for(hits: list[Hit], scopes: list[int]) -> list[Result]:
    """The current chunks behind hits, in the hits' order. A chunk deleted since the search, or
    no longer in the scopes (moved), is left out rather than shown."""
    chunks = current_chunks().filter(
        pk__in=[hit.passage_id for hit in hits], version__document__collection__in=scopes
    )
    by_id = {chunk.pk: chunk for chunk in chunks.select_related("version__document__collection")}
    return [
        Result(by_id[hit.passage_id], hit.score, hit.bm25_rank, hit.dense_rank)
        for hit in hits
        if hit.passage_id in by_id
    ]
