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
# Postings a pruned query reads for its rarest terms before it checks whether that was enough.
PRUNE_POSTINGS = 2000


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
    scoring = _Scoring(
        terms=[term for term, _ in weighted],
        weights=[weight for _, weight in weighted],
        scopes=list(scopes),
        avgdl=(totals["length"] or 0) / corpus_size,
        k=k,
    )
    if any(weight < 0 for weight in scoring.weights):
        return scoring.all_passages()
    return scoring.pruned({term: frequencies[term] for term, _ in weighted})


class _Scoring:
    """One query's BM25 over the postings in PostgreSQL.

    `all_passages` sums every posting of every query term. `pruned` gets the same top k while
    reading far fewer postings (MaxScore): a term adds less than weight x (k1 + 1) to any passage,
    so once the k-th best score among passages that contain one of the rarer terms exceeds what
    the remaining, frequent terms could add together, no passage with only frequent terms can
    enter the top k. Rare terms are few postings; frequent ones are most of them.
    """

    def __init__(self, *, terms: list[str], weights: list[float], scopes: list[int], avgdl: float, k: int):
        self.terms, self.weights, self.scopes, self.avgdl, self.k = terms, weights, scopes, avgdl, k
        self.k1, self.b = settings.RETRIEVAL_BM25_K1, settings.RETRIEVAL_BM25_B

    def all_passages(self) -> list[tuple[int, float]]:
        return self._run(" FROM retrieval_posting p", {})

    def pruned(self, passages_per_term: dict[str, int]) -> list[tuple[int, float]]:
        order = sorted(range(len(self.terms)), key=lambda i: -self.weights[i])
        bounds = [self.weights[i] * (self.k1 + 1) for i in order]
        # Start with the rarest term, and more rare terms while their postings stay few.
        sizes = [passages_per_term[self.terms[i]] for i in order]
        split, postings = 1, sizes[0]
        while split < len(order) and postings + sizes[split] <= PRUNE_POSTINGS:
            postings += sizes[split]
            split += 1
        if split < len(order):
            best = self._run(
                " FROM (SELECT DISTINCT passage_id FROM retrieval_posting"
                "   WHERE term = ANY(%(essential)s) AND scope = ANY(%(scopes)s)) AS c"
                " JOIN retrieval_posting p ON p.passage_id = c.passage_id",
                {"essential": [self.terms[i] for i in order[:split]]},
            )
            if len(best) == self.k and best[-1][1] > sum(bounds[split:]):
                return best
        # Every term is rare, or the frequent ones could still matter: one exact pass over all.
        return self.all_passages()

    def _run(self, source: str, extra: dict) -> list[tuple[int, float]]:
        with limited_cursor() as cursor:
            cursor.execute(
                "SELECT p.passage_id, SUM(w.weight * p.frequency * (%(k1)s + 1)"
                "   / (p.frequency + %(k1)s * (1 - %(b)s + %(b)s * p.length / %(avgdl)s))) AS score"
                + source
                + " JOIN unnest(%(terms)s::text[], %(weights)s::float8[]) AS w(term, weight)"
                " ON w.term = p.term"
                " WHERE p.scope = ANY(%(scopes)s)"
                " GROUP BY p.passage_id"
                " ORDER BY score DESC, p.passage_id"
                " LIMIT %(k)s",
                {
                    "k1": self.k1,
                    "b": self.b,
                    "avgdl": self.avgdl,
                    "terms": self.terms,
                    "weights": self.weights,
                    "scopes": self.scopes,
                    "k": self.k,
                    **extra,
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
