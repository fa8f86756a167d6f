"""Throughput measurements printed by `manage.py bench` (never asserted in tests)."""

import random
import time
import tracemalloc
import uuid
from pathlib import Path

from django.conf import settings

from kb.answering.sensitive_terms import Action, Term, TermMatcher, term_key
from kb.ingestion.parsing import parse_document
from kb.models import Collection, DocumentVersion
from kb.services.documents import delete_collection
from kb.services.ingestion import chunk_windows, embedding_input, finish_jobs, upload_document
from retrieval import cache as retrieval_cache
from retrieval.embedding import embed_passages, load_encoder
from retrieval.reembedding import active_model


def bench_ingest(*, docs: Path) -> dict:
    """End-to-end ingestion of a folder against raw `model.encode` of the very same chunks.

    The folder is ingested into a throw-away collection (deleted afterwards), by the running
    workers if any answer, else in this process. The ratio of the two rates is what the
    pipeline keeps of the physical limit, the encoder alone.
    """
    files = sorted(path for path in docs.iterdir() if path.is_file())
    collection = Collection.objects.create(name=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        started = time.perf_counter()
        versions = []
        for path in files:
            with path.open("rb") as content:
                versions.append(
                    upload_document(collection=collection, name=path.name, content=content).version
                )
        workers = finish_jobs([version.pk for version in versions])
        pipeline_seconds = time.perf_counter() - started
        versions = list(DocumentVersion.objects.filter(pk__in=[v.pk for v in versions]))
        chunks = sum(version.chunks_total for version in versions)
        failed = [version.original_name for version in versions if version.job_state != "done"]

        # The same chunks through the encoder alone, in the same run.
        inputs = []
        parse_started = time.perf_counter()
        for path in files:
            parsed = parse_document(path.read_bytes(), filename=path.name)
            inputs += [
                embedding_input(parsed.title, window.heading_path, window.text)
                for window in chunk_windows(parsed)
            ]
        parse_seconds = time.perf_counter() - parse_started
        model = active_model()  # the one the pipeline embedded with
        load_encoder(model)
        encode_started = time.perf_counter()
        embed_passages(model, inputs, batch_size=settings.KB_EMBEDDING_BATCH)
        encode_seconds = time.perf_counter() - encode_started
    finally:
        delete_collection(collection)
    pipeline_rate = chunks / pipeline_seconds
    encode_rate = len(inputs) / encode_seconds
    return {
        "documents": len(files),
        "failed": failed,
        "chunks": chunks,
        "processed_by": "workers" if workers else "this process (no worker answered)",
        "pipeline_seconds": round(pipeline_seconds, 2),
        "pipeline_chunks_per_s": round(pipeline_rate, 2),
        "encode_only_seconds": round(encode_seconds, 2),
        "encode_only_chunks_per_s": round(encode_rate, 2),
        "pipeline_to_encode_ratio": round(pipeline_rate / encode_rate, 3),
        "parse_and_chunk_only_seconds": round(parse_seconds, 2),
        "embedding_model": model,
        "batch_size": settings.KB_EMBEDDING_BATCH,
        "window_tokens": settings.KB_CHUNK_WINDOW,
        "overlap_tokens": settings.KB_CHUNK_OVERLAP,
    }


BENCH_TEXT_CHARACTERS = 100_000
BENCH_SMALL_LIST = 1_000
_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def _pseudo_word(rng: random.Random, syllables: int) -> str:
    """An English-like word of `syllables` syllables, each one of some 1,600."""
    return "".join(
        rng.choice(_CONSONANTS) + rng.choice(_VOWELS) + rng.choice(_CONSONANTS) for _ in range(syllables)
    )


def _chinese_word(rng: random.Random) -> str:
    return "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 5)))


def _bench_terms(rng: random.Random, count: int) -> list[Term]:
    """`count` distinct terms: English-like words of two or three syllables and phrases of up to three
    such words (60 %), and Chinese words of two to five characters (40 %), with all three actions."""
    terms, keys = [], set()
    while len(terms) < count:
        if rng.random() < 0.6:
            text = " ".join(_pseudo_word(rng, rng.randint(2, 3)) for _ in range(rng.choice([1, 1, 2, 3])))
        else:
            text = _chinese_word(rng)
        if term_key(text) not in keys:
            keys.add(term_key(text))
            terms.append(Term(text, f"category-{rng.randint(1, 50)}", rng.choice(list(Action))))
    return terms


def _bench_text(rng: random.Random, terms: list[Term], characters: int) -> str:
    """Mixed English and Chinese prose of `characters` characters in which about one word in fifty
    is a term (from the first BENCH_SMALL_LIST terms, so both lists find some)."""
    pieces, size = [], 0
    while size < characters:
        if rng.random() < 0.02:
            piece = rng.choice(terms[:BENCH_SMALL_LIST]).text + " "
        elif rng.random() < 0.6:
            piece = _pseudo_word(rng, rng.randint(1, 3)) + rng.choice([" ", " ", " ", ", ", ". "])
        else:
            piece = _chinese_word(rng) + rng.choice(["", "", "，", "。"])
        pieces.append(piece)
        size += len(piece)
    return "".join(pieces)[:characters]


def _scan_rate(matcher: TermMatcher, text: str, repeats: int = 5) -> tuple[float, int]:
    """Characters per second of matcher.screen(text) (best of `repeats`), and the matches found."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        screening = matcher.screen(text)
        best = min(best, time.perf_counter() - started)
    return len(text) / best, len(screening.matches)


def bench_terms(*, terms: int) -> dict:
    """Building a sensitive-term matcher of `terms` random terms (time and memory), and screening the
    same ~100 KB text with the first 1,000 of them and with all: the characters per second should be
    about the same, since Aho-Corasick's cost per character does not depend on the number of terms."""
    rng = random.Random(20240601)  # a fixed seed: the same terms and text on every run
    term_list = _bench_terms(rng, terms)
    text = _bench_text(rng, term_list, BENCH_TEXT_CHARACTERS)
    small = TermMatcher(term_list[:BENCH_SMALL_LIST])
    started = time.perf_counter()
    large = TermMatcher(term_list)
    build_seconds = time.perf_counter() - started
    del large
    tracemalloc.start()  # a second build, traced: tracing slows it down, so it is not the one timed
    large = TermMatcher(term_list)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    small_rate, small_matches = _scan_rate(small, text)
    large_rate, large_matches = _scan_rate(large, text)
    return {
        "terms": len(large),
        "build_seconds": round(build_seconds, 2),
        "matcher_memory_mb": round(memory / 2**20, 1),
        "text_characters": len(text),
        "scan_1000_terms_chars_per_s": round(small_rate),
        "scan_1000_terms_matches": small_matches,
        f"scan_{terms}_terms_chars_per_s": round(large_rate),
        f"scan_{terms}_terms_matches": large_matches,
        "large_to_small_rate_ratio": round(large_rate / small_rate, 3),
    }


# Popularity of questions in the frequent-question benchmark: the k-th most asked question is asked
# in proportion to 1 / k ** ZIPF_EXPONENT, as staff questions (and web queries) roughly are.
ZIPF_EXPONENT = 1.0


def bench_answer_cache(*, docs: Path, questions: Path, asks: int, seed: int = 7) -> dict:
    """The frequent-question cache under a Zipf-distributed stream of `asks` dev questions: the hit
    rate, and answer latency with and without a hit. Needs an engine (ENGINE_URLS)."""
    from kb.services.answer_evaluation import evaluation_reader, latency_percentiles
    from kb.services.answers import ask
    from kb.services.evaluation import default_collection_name, ingest_folder, load_questions

    collection = ingest_folder(docs, default_collection_name(docs))
    user = evaluation_reader(collection)
    pool = [question.question for question in load_questions(questions)]
    rng = random.Random(seed)
    rng.shuffle(pool)
    weights = [1 / rank**ZIPF_EXPONENT for rank in range(1, len(pool) + 1)]
    stream = rng.choices(pool, weights=weights, k=asks)
    retrieval_cache.clear("answer")  # answers cached before this run would count as hits
    latencies = {True: [], False: []}
    for text in stream:
        asked = ask(user=user, question=text, collections=[collection.name])
        latencies[asked.cache_hit].append(asked.latency_ms)
    return {
        "asks": asks,
        "distinct_questions": len(set(stream)),
        "best_possible_hit_rate": round(1 - len(set(stream)) / asks, 4),
        "zipf_exponent": ZIPF_EXPONENT,
        "hit_rate": round(len(latencies[True]) / asks, 4),
        "latency_ms_hit": latency_percentiles(latencies[True]),
        "latency_ms_miss": latency_percentiles(latencies[False]),
    }
