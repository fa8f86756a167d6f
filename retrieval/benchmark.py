"""Search speed and accuracy on a generated corpus (`manage.py bench search`; never asserted in tests).

The corpus is built from real material so that term and vector distributions look like a
company's: passages are word sequences drawn from the vocabulary of a folder of documents with
its real frequencies (so document frequencies follow Zipf's law), and their vectors are noisy
blends of that folder's real paragraph embeddings (so neighbourhoods are clustered, as with
real text, not uniform noise, on which HNSW behaves unlike it does in use). Queries are the
questions of a questions file. Everything lives in one scope of its own, deleted afterwards.
"""

import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from rank_bm25 import BM25Okapi
from tqdm import tqdm

from retrieval.bm25 import bm25_top_k
from retrieval.dense import dense_top_k
from retrieval.embedding import embed_passages, embed_query
from retrieval.index import NewPassage, add_passages, remove_passages
from retrieval.models import Passage
from retrieval.search import search
from retrieval.tokenizer import search_tokens

# Far from kb's collection ids (which are positive), so the bench never touches real data.
BENCH_SCOPE = -4242
BATCH = 2000
PASSAGE_WORDS = (60, 160)
NOISE = 0.05
EF_SEARCH = (100, 200, 400, 800)


def bench_search(*, chunks: int, docs: Path, questions: Path, queries: int = 100, seed: int = 7) -> dict:
    rng = random.Random(seed)
    vocabulary, weights, paragraphs = _vocabulary(docs)
    anchors = np.array(embed_passages(settings.KB_EMBEDDING_MODEL, paragraphs))
    texts = _questions(questions, queries, rng)
    try:
        corpus = _generate(chunks, vocabulary, weights, anchors, rng)
        with connection.cursor() as cursor:
            # What autovacuum does some time after a bulk load: statistics for the planner, and
            # the space of the posting blocks rewritten while loading made free again.
            cursor.execute("VACUUM ANALYZE retrieval_postingblock, retrieval_passage")
        return {
            "chunks": chunks,
            "queries": len(texts),
            "bm25": _bench_bm25(corpus, rng, queries),
            "dense": _bench_dense(texts),
            "hybrid": _bench_hybrid(texts),
            "storage_bytes_per_passage": _storage(),
        }
    finally:
        with transaction.atomic():
            remove_passages(Passage.objects.filter(scope=BENCH_SCOPE).values_list("id", flat=True))


def _storage() -> dict:
    """What each passage costs in PostgreSQL (all scopes, the bench's passages by far the most):
    the passage table (text and vector), its HNSW index, its other indexes, the BM25 postings with
    their indexes. For sizing memory and disk per million chunks."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM retrieval_passage), pg_table_size('retrieval_passage'),"
            " pg_relation_size('passage_embedding_hnsw'), pg_indexes_size('retrieval_passage'),"
            " pg_total_relation_size('retrieval_postingblock')"
        )
        passages, table, hnsw, indexes, postings = cursor.fetchone()
    return {
        "passages": passages,
        "passage_table": round(table / passages),
        "hnsw_index": round(hnsw / passages),
        "other_passage_indexes": round((indexes - hnsw) / passages),
        "postings_with_indexes": round(postings / passages),
    }


def _vocabulary(docs: Path) -> tuple[list[str], list[int], list[str]]:
    counts, paragraphs = Counter(), []
    for path in sorted(docs.iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        counts.update(search_tokens(text))
        paragraphs += [part for part in text.split("\n\n") if len(part) > 200]
    vocabulary = sorted(counts)
    return vocabulary, [counts[word] for word in vocabulary], paragraphs[:1000]


def _questions(path: Path, limit: int, rng: random.Random) -> list[str]:
    rows = [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").splitlines() if line]
    return rng.sample(rows, min(limit, len(rows)))


def _generate(chunks, vocabulary, weights, anchors, rng) -> list[list[str]]:
    """Index `chunks` passages in the bench scope; returns each passage's search tokens."""
    corpus = []
    generator = np.random.default_rng(rng.randrange(2**32))
    first_id = 10**15  # far above any chunk id
    with tqdm(total=chunks, desc="generating", unit="chunk", disable=None) as bar:
        for start in range(0, chunks, BATCH):
            size = min(BATCH, chunks - start)
            texts = [
                " ".join(rng.choices(vocabulary, weights, k=rng.randint(*PASSAGE_WORDS))) for _ in range(size)
            ]
            pairs = generator.integers(0, len(anchors), size=(size, 2))
            mix = generator.random((size, 1))
            vectors = mix * anchors[pairs[:, 0]] + (1 - mix) * anchors[pairs[:, 1]]
            vectors += generator.normal(scale=NOISE, size=vectors.shape)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            with transaction.atomic():
                add_passages(
                    BENCH_SCOPE,
                    [
                        NewPassage(id=first_id + start + offset, text=text, embedding=vector.tolist())
                        for offset, (text, vector) in enumerate(zip(texts, vectors, strict=True))
                    ],
                )
            corpus += [search_tokens(text) for text in texts]
            bar.update(size)
    return corpus


def _bench_bm25(corpus: list[list[str]], rng: random.Random, queries: int) -> dict:
    """Our SQL top-10 against rank_bm25's get_scores + top-10 on the same tokens, same queries."""
    oracle = BM25Okapi(
        corpus,
        k1=settings.RETRIEVAL_BM25_K1,
        b=settings.RETRIEVAL_BM25_B,
        epsilon=settings.RETRIEVAL_BM25_EPSILON,
    )
    # Queries of 2-5 words taken from random passages: every one matches something.
    asked = [
        " ".join(rng.sample(passage, min(len(passage), rng.randint(2, 5))))
        for passage in rng.sample(corpus, queries)
    ]
    ours, theirs, identical = [], [], 0
    for query in asked:
        started = time.perf_counter()
        found = bm25_top_k(query, scopes=[BENCH_SCOPE], k=10)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        scores = oracle.get_scores(search_tokens(query))
        best = np.argsort(-scores, kind="stable")[:10]
        theirs.append(time.perf_counter() - started)
        expected = [(int(index), float(scores[index])) for index in best]
        identical += _same_top(found, expected)
    return {
        "p50_ms": _ms(ours, 50),
        "p95_ms": _ms(ours, 95),
        "rank_bm25_p50_ms": _ms(theirs, 50),
        "rank_bm25_p95_ms": _ms(theirs, 95),
        "speedup_p50": round(statistics.median(theirs) / statistics.median(ours), 1),
        "identical_top10": f"{identical}/{len(asked)}",
    }


def _same_top(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """Same passages with the same scores (1e-6); passages tied in score may come in either order."""
    first_id = 10**15
    ours = sorted((round(score, 6), passage_id - first_id) for passage_id, score in found)
    oracle = sorted((round(score, 6), index) for index, score in expected)
    return ours == oracle


def _bench_dense(texts: list[str]) -> dict:
    vectors = [embed_query(settings.KB_EMBEDDING_MODEL, text) for text in texts]
    exact, exact_times = _timed(
        lambda vector: dense_top_k(vector, scopes=[BENCH_SCOPE], k=10, exact=True), vectors
    )
    result = {"exact_p50_ms": _ms(exact_times, 50), "exact_p95_ms": _ms(exact_times, 95)}
    for ef in EF_SEARCH:
        found, times = _timed(
            lambda vector, ef=ef: dense_top_k(vector, scopes=[BENCH_SCOPE], k=10, exact=False, ef_search=ef),
            vectors,
        )
        recall = statistics.mean(
            len({pid for pid, _ in got} & {pid for pid, _ in truth}) / 10
            for got, truth in zip(found, exact, strict=True)
        )
        result[f"hnsw_ef{ef}"] = {
            "recall@10": round(recall, 4),
            "p50_ms": _ms(times, 50),
            "p95_ms": _ms(times, 95),
        }
    return result


def _bench_hybrid(texts: list[str]) -> dict:
    """Whole `search` calls: query embedding, BM25, HNSW, fusion; then the same queries again, cached."""
    embed_query(settings.KB_EMBEDDING_MODEL, "warm up")
    _, cold = _timed(lambda text: search(text, scopes=[BENCH_SCOPE], mode="hybrid", k=10), texts)
    _, warm = _timed(lambda text: search(text, scopes=[BENCH_SCOPE], mode="hybrid", k=10), texts)
    return {
        "p50_ms": _ms(cold, 50),
        "p95_ms": _ms(cold, 95),
        "cached_p50_ms": _ms(warm, 50),
        "cached_p95_ms": _ms(warm, 95),
        "ef_search": settings.RETRIEVAL_EF_SEARCH,
    }


def _timed(call: Callable, inputs: list) -> tuple[list, list[float]]:
    results, times = [], []
    for item in tqdm(inputs, desc="querying", unit="query", disable=None, leave=False):
        started = time.perf_counter()
        results.append(call(item))
        times.append(time.perf_counter() - started)
    return results, times


def _ms(times: list[float], percentile: int) -> float:
    return round(float(np.percentile(times, percentile)) * 1000, 2)
