"""Adding passages to and removing them from the search index (BM25 and vectors at once).

Call these in the transaction that makes passages visible or invisible to searches: the
statistics, the vectors and the cache versions of the scopes then change with it. Each is atomic
on its own too, since the posting blocks are read and rewritten under a lock held until commit.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import transaction

from retrieval import bm25, cache
from retrieval.models import Passage, PassageTerms
from retrieval.tokenizer import search_tokens


@dataclass(frozen=True)
class NewPassage:
    id: int
    text: str
    embedding: list[float] | None  # None: found by keywords only


def add_passages(scope: int, passages: Iterable[NewPassage]) -> None:
    """Index passages under `scope` (a collection, for kb)."""
    rows, term_counts = [], {}
    for passage in passages:
        counts = Counter(search_tokens(passage.text))
        term_counts[passage.id] = counts
        rows.append(
            Passage(id=passage.id, scope=scope, length=sum(counts.values()), embedding=passage.embedding)
        )
    if not rows:
        return
    with transaction.atomic():
        Passage.objects.bulk_create(rows)
        PassageTerms.objects.bulk_create(
            PassageTerms(passage_id=passage_id, terms=sorted(counts))
            for passage_id, counts in term_counts.items()
        )
        bm25.index_terms(scope, term_counts)
        cache.scopes_changed({scope})


def remove_passages(ids: Iterable[int]) -> None:
    """Take passages out of the index (ids that are not indexed are ignored)."""
    ids = list(ids)
    scopes = set(Passage.objects.filter(id__in=ids).values_list("scope", flat=True).distinct())
    if not scopes:
        return
    with transaction.atomic():
        bm25.unindex_terms(ids)
        Passage.objects.filter(id__in=ids).delete()
        cache.scopes_changed(scopes)


def move_passages(ids: Iterable[int], scope: int) -> None:
    """Put indexed passages under another scope (ids that are not indexed are ignored)."""
    ids = list(ids)
    scopes = set(Passage.objects.filter(id__in=ids).values_list("scope", flat=True).distinct())
    if not scopes - {scope}:
        return
    with transaction.atomic():
        bm25.move_terms(ids, scope)
        Passage.objects.filter(id__in=ids).update(scope=scope)
        cache.scopes_changed(scopes | {scope})
