"""Exact Okapi BM25 in PostgreSQL, scored over the scopes a user may read.

Scores equal `rank_bm25.BM25Okapi(corpus).get_scores(query)` (same k1, b, epsilon) where the corpus
is every passage in the given scopes, tokenized by `search_tokens`, and the query has at most
RETRIEVAL_BM25_MAX_TERMS distinct terms (a longer one is scored on its rarest). The permission
filter is part of the statistics, not applied after a top-k cut, and the inverse document
frequencies come from the readable scopes only, so scores reveal nothing about passages the user
cannot read.

`retrieval.index` keeps the postings and statistics current through `index_terms` and
`unindex_terms`, in the transaction that makes passages visible or invisible.
"""

import math
from collections import Counter

from django.conf import settings
from django.db import connection
from django.db.models import Count, Sum

from retrieval import cache
from retrieval.models import Passage, Posting, ScopeStats, TermStats
from retrieval.statements import limited_cursor
from retrieval.tokenizer import search_tokens

POSTING_BATCH = 5000


def index_terms(scope: int, term_counts: dict[int, Counter]) -> None:
    """Write the postings of new passages (id -> term frequencies) and add them to the statistics."""
    postings = [
        Posting(
            passage_id=passage_id, term=term, scope=scope, length=sum(counts.values()), frequency=frequency
        )
        for passage_id, counts in term_counts.items()
        for term, frequency in counts.items()
    ]
    Posting.objects.bulk_create(postings, batch_size=POSTING_BATCH)
    frequencies = Counter()
    for counts in term_counts.values():
        frequencies.update(counts.keys())
    length = sum(sum(counts.values()) for counts in term_counts.values())
    _adjust(scope, len(term_counts), length, frequencies)


def count_terms(scope: int, ids: list[int]) -> None:
    """Add passages whose postings are already stored under `scope` to its statistics."""
    totals = Passage.objects.filter(id__in=ids).aggregate(n=Count("id"), length=Sum("length"))
    frequencies = Counter(
        dict(
            Posting.objects.filter(passage_id__in=ids)
            .values("term")
            .annotate(n=Count("id"))
            .values_list("term", "n")
        )
    )
    _adjust(scope, totals["n"], totals["length"] or 0, frequencies)


def unindex_terms(ids: list[int]) -> None:
    """Take passages out of the statistics; their postings go with the passages (cascade)."""
    scopes = Passage.objects.filter(id__in=ids).values("scope").annotate(n=Count("id"), length=Sum("length"))
    for scope in scopes:
        frequencies = Counter(
            dict(
                Posting.objects.filter(passage_id__in=ids, scope=scope["scope"])
                .values("term")
                .annotate(n=Count("id"))
                .values_list("term", "n")
            )
        )
        _adjust(
            scope["scope"], -scope["n"], -scope["length"], Counter({t: -n for t, n in frequencies.items()})
        )
    TermStats.objects.filter(passages__lte=0).delete()
    ScopeStats.objects.filter(passages__lte=0).delete()


def _adjust(scope: int, passages: int, length: int, frequencies: Counter) -> None:
    """Add to a scope's counts (negative numbers remove). Terms are updated in sorted order, so
    concurrent transactions lock the same rows in the same order and cannot deadlock."""
    terms = sorted(frequencies)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO retrieval_scopestats (scope, passages, total_length) VALUES (%s, %s, %s)"
            " ON CONFLICT (scope) DO UPDATE SET passages = retrieval_scopestats.passages + EXCLUDED.passages,"
            " total_length = retrieval_scopestats.total_length + EXCLUDED.total_length",
            [scope, passages, length],
        )
        cursor.execute(
            "INSERT INTO retrieval_termstats (scope, term, passages)"
            " SELECT %s, term, n FROM unnest(%s::text[], %s::bigint[]) AS t(term, n)"
            " ON CONFLICT (scope, term)"
            " DO UPDATE SET passages = retrieval_termstats.passages + EXCLUDED.passages",
            [scope, terms, [frequencies[term] for term in terms]],
        )


def bm25_top_k(query: str, *, scopes: list[int], k: int) -> list[tuple[int, float]]:
    """(passage id, score) of the k best passages in `scopes` that contain a query term, best first.

    Scores are rank_bm25's, negative ones included: in a scope of one or two passages every term
    occurs in more than half of them, and BM25Okapi's idf turns negative there. Such passages are
    still the matches, so they are returned rather than dropped.
    """
    query_terms = Counter(search_tokens(query))
    if not query_terms or not scopes or k <= 0:
        return []
    totals = ScopeStats.objects.filter(scope__in=scopes).aggregate(
        n=Sum("passages"), length=Sum("total_length")
    )
    corpus_size = totals["n"] or 0
    if corpus_size == 0:
        return []
    frequencies = dict(
        TermStats.objects.filter(scope__in=scopes, term__in=query_terms)
        .values("term")
        .annotate(n=Sum("passages"))
        .values_list("term", "n")
    )
    idf = {term: _idf(corpus_size, n) for term, n in frequencies.items()}
    if any(value < 0 for value in idf.values()):
        # rank_bm25 floors negative idfs (terms in more than half the passages) at epsilon times
        # the average idf of the whole vocabulary; only then is that average worth computing.
        floor = settings.RETRIEVAL_BM25_EPSILON * _average_idf(corpus_size, scopes)
        idf = {term: floor if value < 0 else value for term, value in idf.items()}
    weighted = [(term, idf[term] * count) for term, count in query_terms.items() if idf.get(term)]
    if not weighted:
        return []
    # A long query (a pasted paragraph) is scored on its most telling terms: every further term
    # adds a posting list to read and changes the ranking less.
    weighted = sorted(weighted, key=lambda pair: (-pair[1], pair[0]))[: settings.RETRIEVAL_BM25_MAX_TERMS]
    return _top_scores(dict(weighted), scopes=list(scopes), avgdl=(totals["length"] or 0) / corpus_size, k=k)


def _top_scores(
    weights: dict[str, float], *, scopes: list[int], avgdl: float, k: int
) -> list[tuple[int, float]]:
    """Sum every posting of the weighted terms in the scopes, in one aggregation. Measured at
    100,000 passages, this beats reading fewer postings (MaxScore, or the threshold algorithm over
    impact-ordered postings): a query of frequent words has no posting it can skip, and finding
    the passages one may skip costs more than the aggregation they would save (README)."""
    k1, b = settings.RETRIEVAL_BM25_K1, settings.RETRIEVAL_BM25_B
    with limited_cursor() as cursor:
        # score = weight x (k1 + 1) x f / (f + k1 x (1 - b) + k1 x b / avgdl x length), in float8
        # throughout: with untyped parameters PostgreSQL computes in numeric, twice as slow.
        cursor.execute(
            "SELECT p.passage_id, SUM(w.weight * p.frequency"
            "   / (p.frequency + %(constant)s::float8 + %(per_token)s::float8 * p.length)) AS score"
            " FROM retrieval_posting p"
            " JOIN unnest(%(terms)s::text[], %(weights)s::float8[]) AS w(term, weight) ON w.term = p.term"
            " WHERE p.scope = ANY(%(scopes)s)"
            " GROUP BY p.passage_id"
            " ORDER BY score DESC, p.passage_id"
            " LIMIT %(k)s",
            {
                "constant": k1 * (1 - b),
                "per_token": k1 * b / avgdl,
                "terms": list(weights),
                "weights": [weight * (k1 + 1) for weight in weights.values()],
                "scopes": scopes,
                "k": k,
            },
        )
        return [(passage_id, score) for passage_id, score in cursor.fetchall()]


def _idf(corpus_size: int, frequency: int) -> float:
    return math.log(corpus_size - frequency + 0.5) - math.log(frequency + 0.5)


def _average_idf(corpus_size: int, scopes: list[int]) -> float:
    """Mean idf over the scopes' whole vocabulary: a scan of their term statistics, so it is
    kept in the cache until one of the scopes changes, and bounded like the scoring statements."""
    key = cache.result_key({"statistic": "average idf"}, scopes, kind="statistic")
    average = cache.get(key)
    if average is None:
        with limited_cursor() as cursor:
            cursor.execute(
                "SELECT avg(ln(%s - n + 0.5) - ln(n + 0.5)) FROM (SELECT sum(passages) AS n"
                " FROM retrieval_termstats WHERE scope = ANY(%s) GROUP BY term) AS t",
                [corpus_size, list(scopes)],
            )
            average = float(cursor.fetchone()[0] or 0.0)
        cache.put(key, average)
    return average
