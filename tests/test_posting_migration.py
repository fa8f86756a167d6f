"""Migration 0005 packs an index stored as one row per posting into blocks, and back, losslessly."""

from collections import Counter

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from retrieval.bm25 import bm25_top_k
from retrieval.models import PassageTerms
from retrieval.tokenizer import search_tokens
from tests.test_bm25 import okapi

pytestmark = pytest.mark.django_db(transaction=True)

SCOPE = 77
# Ids in several blocks of 1,024 and far apart, as chunk ids are after years of uploads.
CORPUS = {
    5: "tenant payment audit",
    6: "tenant tenant refund",
    1030: "invoice payment",
    2050: "liability audit audit contract",
    10**12 + 3: "contract tenant invoice refund",
}
BEFORE, AFTER = ("retrieval", "0004_embedding_state"), ("retrieval", "0005_posting_blocks")


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def posting_rows() -> set[tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT passage_id, term, scope, frequency, length FROM retrieval_posting")
        return set(cursor.fetchall())


@pytest.fixture
def index_as_rows():
    """The index of CORPUS as migration 0004 left it: postings and statistics as rows."""
    migrate(BEFORE)
    tokens = {pid: Counter(search_tokens(text)) for pid, text in CORPUS.items()}
    document_frequency = Counter(term for counts in tokens.values() for term in counts)
    with connection.cursor() as cursor:
        for pid, counts in tokens.items():
            length = sum(counts.values())
            cursor.execute(
                "INSERT INTO retrieval_passage (id, scope, length) VALUES (%s, %s, %s)", [pid, SCOPE, length]
            )
            for term, frequency in counts.items():
                cursor.execute(
                    "INSERT INTO retrieval_posting (passage_id, term, scope, frequency, length)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [pid, term, SCOPE, frequency, length],
                )
        cursor.execute(
            "INSERT INTO retrieval_scopestats (scope, passages, total_length) VALUES (%s, %s, %s)",
            [SCOPE, len(tokens), sum(sum(counts.values()) for counts in tokens.values())],
        )
        for term, n in document_frequency.items():
            cursor.execute(
                "INSERT INTO retrieval_termstats (scope, term, passages) VALUES (%s, %s, %s)",
                [SCOPE, term, n],
            )
    rows = posting_rows()
    yield rows
    migrate(AFTER)


def test_packed_postings_score_as_before_and_unpack_to_the_same_rows(index_as_rows):
    migrate(AFTER)
    oracle = okapi([search_tokens(text) for text in CORPUS.values()])
    for query in ["tenant", "audit contract", "invoice refund payment"]:
        expected = dict(zip(CORPUS, oracle.get_scores(search_tokens(query)), strict=True))
        found = bm25_top_k(query, scopes=[SCOPE], k=10)
        assert found and all(score == pytest.approx(expected[pid], abs=1e-6) for pid, score in found)
        assert {pid for pid, _ in found} == {
            pid for pid in CORPUS if set(search_tokens(query)) & set(search_tokens(CORPUS[pid]))
        }
    assert dict(PassageTerms.objects.values_list("passage_id", "terms")) == {
        pid: sorted(set(search_tokens(text))) for pid, text in CORPUS.items()
    }
    migrate(BEFORE)
    assert posting_rows() == index_as_rows
