"""Dense, fused and cached search over the real index: pgvector HNSW, BM25 in PostgreSQL, Redis."""

import itertools

import numpy as np
import pytest
from django.conf import settings
from django.db import connection

from retrieval.dense import dense_top_k
from retrieval.embedding import embed_passages, embed_query
from retrieval.fusion import reciprocal_rank_fusion, weighted_fusion
from retrieval.index import NewPassage, add_passages, remove_passages
from retrieval.search import InvalidQuery, search

pytestmark = pytest.mark.django_db

POLICIES = [
    "Employees may carry over five days of annual leave into the next year.",
    "Suppliers must hold a valid ISO-9001 certificate before the first purchase order.",
    "The quarterly revenue grew by twelve percent in the northern region.",
    "Dogs bark at strangers who come near the warehouse at night.",
    "Expense reports above 500 EUR need the approval of a department head.",
]
ids = itertools.count(10_000)
scopes = itertools.count(1_000)


def index_texts(scope: int, texts: list[str]) -> list[int]:
    vectors = embed_passages(settings.KB_EMBEDDING_MODEL, texts)
    passage_ids = [next(ids) for _ in texts]
    add_passages(
        scope,
        [
            NewPassage(id=pid, text=text, embedding=vector)
            for pid, text, vector in zip(passage_ids, texts, vectors, strict=True)
        ],
    )
    return passage_ids


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, settings.KB_EMBEDDING_DIMENSIONS))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_dense_search_finds_a_paraphrase_that_shares_no_keyword():
    scope = next(scopes)
    passage_ids = index_texts(scope, POLICIES)
    query = embed_query(settings.KB_EMBEDDING_MODEL, "How many vacation days roll over?")
    for exact in (True, False):
        found = dense_top_k(query, scopes=[scope], k=2, exact=exact)
        assert found[0][0] == passage_ids[0]
        assert found[0][1] > found[1][1]


def test_filtered_hnsw_scan_still_returns_k_readable_passages():
    """The readable scope is 2% of the index: HNSW alone would find mostly unreadable neighbours."""
    crowd, readable = next(scopes), next(scopes)
    vectors = unit_vectors(1_000, seed=1)
    crowd_ids = [next(ids) for _ in range(980)]
    readable_ids = [next(ids) for _ in range(20)]
    add_passages(
        crowd, [NewPassage(pid, "crowd", v.tolist()) for pid, v in zip(crowd_ids, vectors[:980], strict=True)]
    )
    add_passages(
        readable,
        [NewPassage(pid, "mine", v.tolist()) for pid, v in zip(readable_ids, vectors[980:], strict=True)],
    )
    query = unit_vectors(1, seed=2)[0].tolist()
    approximate = dense_top_k(query, scopes=[readable], k=10, exact=False, ef_search=10)
    exact = dense_top_k(query, scopes=[readable], k=10, exact=True)
    assert len(approximate) == 10 and set(pid for pid, _ in approximate) <= set(readable_ids)
    assert [pid for pid, _ in approximate] == [pid for pid, _ in exact]


def test_approximate_dense_search_uses_the_hnsw_index():
    scope = next(scopes)
    vectors = unit_vectors(200, seed=3)
    add_passages(scope, [NewPassage(next(ids), "x", v.tolist()) for v in vectors])
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # a table this small would otherwise be scanned
        cursor.execute("SET hnsw.iterative_scan = relaxed_order")
        cursor.execute(
            "EXPLAIN SELECT id FROM retrieval_passage WHERE scope = ANY(%s)"
            " ORDER BY embedding <=> %s::vector LIMIT 5",
            [[scope], str(vectors[0].tolist())],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_seqscan")
    assert "passage_embedding_hnsw" in plan


def test_hybrid_search_finds_exact_codes_and_paraphrases():
    scope = next(scopes)
    passage_ids = index_texts(scope, POLICIES)
    assert search("ISO-9001", scopes=[scope], mode="bm25")[0].passage_id == passage_ids[1]
    assert (
        search("How many vacation days roll over?", scopes=[scope], mode="dense")[0].passage_id
        == passage_ids[0]
    )
    for query, expected in [("ISO-9001", 1), ("How many vacation days roll over?", 0)]:
        best = search(query, scopes=[scope], mode="hybrid")[0]
        assert best.passage_id == passage_ids[expected]
    both = search("ISO-9001 certificate", scopes=[scope], k=3)[0]
    assert both.bm25_rank == 1 and both.dense_rank == 1


def test_search_never_returns_passages_outside_the_given_scopes():
    readable, hidden = next(scopes), next(scopes)
    visible = index_texts(readable, POLICIES[:3])
    index_texts(hidden, POLICIES)
    for mode in ("hybrid", "bm25", "dense"):
        hits = search("annual leave ISO-9001 revenue dogs expense", scopes=[readable], mode=mode, k=10)
        assert hits and {hit.passage_id for hit in hits} <= set(visible)
    assert search("annual leave", scopes=[], k=5) == []


def test_cached_results_are_replaced_once_the_index_changes(django_capture_on_commit_callbacks):
    scope = next(scopes)
    with django_capture_on_commit_callbacks(execute=True):
        first = index_texts(scope, POLICIES[:1])
    assert [hit.passage_id for hit in search("annual leave", scopes=[scope])] == first
    with django_capture_on_commit_callbacks(execute=True):
        second = index_texts(
            scope, ["Annual leave requests go to the HR portal; annual leave is approved weekly."]
        )
    assert {hit.passage_id for hit in search("annual leave", scopes=[scope])} == set(first + second)
    with django_capture_on_commit_callbacks(execute=True):
        remove_passages(first + second)
    assert search("annual leave", scopes=[scope]) == []


def test_a_cached_result_is_served_without_touching_the_database(django_assert_num_queries):
    scope = next(scopes)
    index_texts(scope, POLICIES)
    first = search("expense approval", scopes=[scope])
    with django_assert_num_queries(0):
        assert search("  Expense   APPROVAL ", scopes=[scope]) == first


@pytest.mark.parametrize(
    ("query", "complaint"),
    [("", "empty"), (" \n\t ", "empty"), ("x" * 10_000, "10,000 characters"), (None, "text")],
)
def test_unsearchable_queries_are_refused_with_a_reason(query, complaint):
    with pytest.raises(InvalidQuery, match=complaint):
        search(query, scopes=[1])


def test_bad_modes_and_sizes_are_refused():
    with pytest.raises(InvalidQuery, match="mode"):
        search("leave", scopes=[1], mode="magic")
    with pytest.raises(InvalidQuery, match="k must"):
        search("leave", scopes=[1], k=0)


@pytest.mark.parametrize("query", ["the of and", "!!! ???", "'; DROP TABLE retrieval_passage; --", "(a|b)*"])
def test_queries_of_stop_words_punctuation_or_metacharacters_find_nothing_harmful(query):
    scope = next(scopes)
    index_texts(scope, POLICIES)
    hits = search(query, scopes=[scope], mode="hybrid")
    assert all(hit.bm25_rank is None for hit in hits)
    assert search("annual leave", scopes=[scope])  # the table is still there


def test_reciprocal_rank_fusion_rewards_agreement_and_weights():
    bm25 = [(1, 9.0), (2, 5.0)]
    dense = [(2, 0.9), (3, 0.8)]
    assert [pid for pid, _ in reciprocal_rank_fusion([bm25, dense], [1.0, 1.0])] == [2, 1, 3]
    assert [pid for pid, _ in reciprocal_rank_fusion([bm25, dense], [1.0, 0.0])][:2] == [1, 2]


def test_weighted_fusion_normalises_scores_per_retriever():
    bm25 = [(1, 30.0), (2, 10.0)]
    dense = [(2, 0.9), (3, 0.3)]
    fused = dict(weighted_fusion([bm25, dense], [0.5, 0.5]))
    assert fused == {1: 0.5, 2: 0.5, 3: 0.0}


def test_chinese_queries_rank_by_bm25_when_the_embedding_model_knows_no_chinese():
    scope = next(scopes)
    index_texts(
        scope, ["合同的付款期限为三十天。", "员工每年有十五天年假。", "仓库夜间有保安巡逻。", *POLICIES]
    )
    bm25 = [hit.passage_id for hit in search("员工年假有几天", scopes=[scope], mode="bm25")]
    hybrid = [hit.passage_id for hit in search("员工年假有几天", scopes=[scope], mode="hybrid")]
    assert bm25 and hybrid == bm25
