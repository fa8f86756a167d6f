"""BM25 in PostgreSQL scores exactly like rank_bm25.BM25Okapi over the passages of the given scopes."""

import itertools
import random

import pytest
from django.conf import settings as django_settings
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from retrieval.bm25 import bm25_top_k, term_rarity
from retrieval.errors import SearchTooCostly
from retrieval.index import NewPassage, add_passages, move_passages, remove_passages
from retrieval.models import PostingBlock, ScopeStats, TermStats
from retrieval.postings import BLOCK_BITS, block_of
from retrieval.tokenizer import search_tokens

pytestmark = pytest.mark.django_db

WORDS = [
    "contract",
    "invoice",
    "liability",
    "payment",
    "tenant",
    "audit",
    "refund",
    "iso-9001",
    "2024",
    "合同",
]
ids = itertools.count(1)
scopes = itertools.count(1)

documents = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join), min_size=1, max_size=12
)
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)


def okapi(corpus: list[list[str]]) -> BM25Okapi:
    """The oracle, with the parameters the index scores with."""
    return BM25Okapi(
        corpus,
        k1=django_settings.RETRIEVAL_BM25_K1,
        b=django_settings.RETRIEVAL_BM25_B,
        epsilon=django_settings.RETRIEVAL_BM25_EPSILON,
    )


def index(scope: int, texts: list[str]) -> list[int]:
    passage_ids = [next(ids) for _ in texts]
    add_passages(
        scope,
        [NewPassage(id=pid, text=text, embedding=None) for pid, text in zip(passage_ids, texts, strict=True)],
    )
    return passage_ids


def assert_scores_match_oracle(query: str, scope_ids: list[int], corpus: dict[int, str]) -> None:
    """Every passage found scores as rank_bm25 says; every passage rank_bm25 scores is found."""
    oracle = okapi([search_tokens(text) for text in corpus.values()]).get_scores(search_tokens(query))
    found = dict(bm25_top_k(query, scopes=scope_ids, k=len(corpus) + 1))
    assert set(found) <= set(corpus)
    for passage_id, expected in zip(corpus, oracle, strict=True):
        if passage_id in found:
            assert found[passage_id] == pytest.approx(expected, abs=1e-6)
        else:
            assert expected == pytest.approx(0, abs=1e-12)
    best = [passage_id for passage_id, _ in bm25_top_k(query, scopes=scope_ids, k=3)]
    assert best == [pid for pid, _ in sorted(found.items(), key=lambda item: (-item[1], item[0]))][:3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=documents, query=queries)
def test_scores_equal_rank_bm25(texts, query):
    scope = next(scopes)
    corpus = dict(zip(index(scope, texts), texts, strict=True))
    assert_scores_match_oracle(query, [scope], corpus)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=documents, query=queries, data=st.data())
def test_scores_stay_exact_after_deletions(texts, query, data):
    scope = next(scopes)
    corpus = dict(zip(index(scope, texts), texts, strict=True))
    removed = data.draw(st.lists(st.sampled_from(list(corpus)), unique=True, max_size=len(corpus) - 1))
    remove_passages(removed)
    remaining = {pid: text for pid, text in corpus.items() if pid not in removed}
    assert_scores_match_oracle(query, [scope], remaining)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(documents, min_size=2, max_size=4), query=queries, gap=st.integers(0, 1500))
def test_scores_stay_exact_when_passages_arrive_in_batches(batches, query, gap):
    """Later uploads rewrite the posting blocks earlier ones wrote (ids 1,024 to a block), or start
    new blocks after a gap in the ids."""
    scope, corpus = next(scopes), {}
    for texts in batches:
        corpus.update(zip(index(scope, texts), texts, strict=True))
        for _ in range(gap):
            next(ids)
    assert_scores_match_oracle(query, [scope], corpus)


def test_statistics_come_from_the_readable_scopes_only():
    readable, hidden = next(scopes), next(scopes)
    visible = dict(
        zip(
            index(readable, ["tenant payment", "audit refund"]),
            ["tenant payment", "audit refund"],
            strict=True,
        )
    )
    index(hidden, ["tenant tenant", "tenant audit", "tenant invoice"] * 5)
    # Passages of the hidden scope are neither returned nor counted in the idf.
    assert_scores_match_oracle("tenant", [readable], visible)
    assert {pid for pid, _ in bm25_top_k("tenant", scopes=[readable], k=50)} <= set(visible)


def test_rarity_is_highest_for_terms_fewest_readable_passages_hold_and_never_negative():
    readable, hidden = next(scopes), next(scopes)
    index(readable, ["tenant payment", "tenant audit", "tenant refund", "tenant invoice"])
    index(hidden, ["audit audit"] * 20)
    rarity = term_rarity(["tenant", "audit", "liability"], scopes=[readable])
    # In all 4 passages: ln(1 + 0.5/4.5); in 1: ln(1 + 3.5/1.5), the hidden scope's 20 passages of
    # "audit" counting for nothing; in none: as in 1, not ln(1 + 4.5/0.5).
    assert rarity == pytest.approx({"tenant": 0.1054, "audit": 1.2040, "liability": 1.2040}, abs=1e-4)
    # Nothing readable: every term alike (ln(1 + (0 - 1 + 0.5) / 1.5) would be negative).
    assert term_rarity(["tenant", "audit"], scopes=[next(scopes)]) == {"tenant": 1.0, "audit": 1.0}
    assert term_rarity([], scopes=[readable]) == {}


def test_blocks_emptied_by_a_removal_are_deleted_and_the_others_kept():
    scope = next(scopes)
    first, staying = index(scope, ["tenant payment", "audit refund"])
    for _ in range(1 << BLOCK_BITS):  # the next passage falls in the following block
        next(ids)
    (second,) = index(scope, ["tenant payment"])
    remove_passages([first, second])
    assert {
        (term, block) for term, block in PostingBlock.objects.filter(scope=scope).values_list("term", "block")
    } == {
        ("audit", block_of(staying)),
        ("refund", block_of(staying)),
    }
    assert_scores_match_oracle("tenant audit", [scope], {staying: "audit refund"})


def test_removing_everything_leaves_no_statistics():
    scope = next(scopes)
    remove_passages(index(scope, ["tenant payment", "audit refund"]))
    assert not ScopeStats.objects.filter(scope=scope).exists()
    assert not TermStats.objects.filter(scope=scope).exists()
    assert not PostingBlock.objects.filter(scope=scope).exists()
    assert bm25_top_k("tenant", scopes=[scope], k=5) == []


@pytest.mark.parametrize(
    "query", ["", "   ", "the of and", "!!! ???", "'; DROP TABLE retrieval_posting; --", "(a|b)*"]
)
def test_queries_without_search_terms_find_nothing(query):
    index(next(scopes), ["tenant payment"])
    assert bm25_top_k(query, scopes=[1, 2, 3], k=5) == []


def test_a_scope_with_a_single_passage_still_finds_it():
    scope = next(scopes)
    (only,) = index(scope, ["tenant payment"])
    [(found, score)] = bm25_top_k("tenant", scopes=[scope], k=5)
    assert found == only and score < 0  # BM25Okapi's idf is negative here, the match is still a match


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=documents, other=documents, query=queries, data=st.data())
def test_scores_stay_exact_after_passages_move_to_another_scope(texts, other, query, data):
    source, target = next(scopes), next(scopes)
    corpus = dict(zip(index(source, texts), texts, strict=True))
    target_corpus = dict(zip(index(target, other), other, strict=True))
    moved = data.draw(st.lists(st.sampled_from(list(corpus)), unique=True, max_size=len(corpus) - 1))
    move_passages(moved, target)
    assert_scores_match_oracle(query, [source], {pid: t for pid, t in corpus.items() if pid not in moved})
    target_corpus.update({pid: corpus[pid] for pid in moved})
    assert_scores_match_oracle(query, [target], dict(sorted(target_corpus.items())))


def test_top_10_on_a_zipf_corpus_equals_rank_bm25():
    """Term frequencies as in real text (a few words everywhere, most rare): the top 10, in order,
    are rank_bm25's."""
    rng = random.Random(5)
    vocabulary = [f"w{rank}" for rank in range(1, 400)]
    weights = [1 / rank for rank in range(1, 400)]
    scope = next(scopes)
    texts = [" ".join(rng.choices(vocabulary, weights, k=rng.randint(5, 40))) for _ in range(600)]
    corpus = dict(zip(index(scope, texts), texts, strict=True))
    oracle = okapi([search_tokens(text) for text in corpus.values()])
    for _ in range(40):
        query = " ".join(rng.sample(rng.choice(texts).split(), 3))
        scores = oracle.get_scores(search_tokens(query))
        oracle_scores = dict(zip(corpus, scores, strict=True))
        found = bm25_top_k(query, scopes=[scope], k=10)
        # The same scores in the same order; passages tied in score may swap places.
        assert [score for _, score in found] == pytest.approx(sorted(scores, reverse=True)[:10], abs=1e-6)
        assert all(score == pytest.approx(oracle_scores[pid], abs=1e-6) for pid, score in found)


def test_a_long_query_is_scored_on_its_most_telling_terms(settings):
    """Beyond RETRIEVAL_BM25_MAX_TERMS distinct terms, the rarest ones (highest idf) are kept:
    the scores are rank_bm25's for the query without its most frequent words."""
    settings.RETRIEVAL_BM25_MAX_TERMS = 6
    rare = [f"rare{n}" for n in range(6)]
    frequent = ["payment", "invoice", "audit"]
    texts = [" ".join([rare[n % 6] if n < 12 else "tenant", *(frequent if n % 5 else [])]) for n in range(30)]
    scope = next(scopes)
    corpus = dict(zip(index(scope, texts), texts, strict=True))
    expected = okapi([search_tokens(text) for text in texts]).get_scores(rare)
    found = dict(bm25_top_k(" ".join(frequent + rare), scopes=[scope], k=len(texts)))
    assert set(found) == {pid for pid, score in zip(corpus, expected, strict=True) if score > 0}
    for passage_id, score in zip(corpus, expected, strict=True):
        if score > 0:
            assert found[passage_id] == pytest.approx(score, abs=1e-6)


@pytest.mark.django_db(transaction=True)  # each search its own transaction, as in a request
def test_a_search_statement_over_the_time_limit_is_stopped_with_a_reason(settings):
    scope = next(scopes)
    index(scope, [" ".join(WORDS[:7]) + f" extra{n}" for n in range(3000)])
    # Statistics as autovacuum would have them by now: planned with those of the earlier tests'
    # handful of postings, the search itself takes seconds, and 5 s would stop it too.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE retrieval_postingblock, retrieval_passage")
    settings.RETRIEVAL_STATEMENT_TIMEOUT_MS = 1
    with pytest.raises(SearchTooCostly, match="longer than 0.001 s and was stopped"):
        bm25_top_k(" ".join(WORDS[:7]), scopes=[scope], k=10)
    settings.RETRIEVAL_STATEMENT_TIMEOUT_MS = 5000
    assert len(bm25_top_k(" ".join(WORDS[:7]), scopes=[scope], k=10)) == 10  # the connection is fine
