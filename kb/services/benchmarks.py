"""Throughput measurements printed by `manage.py bench` (never asserted in tests)."""

import time
import uuid
from pathlib import Path

from django.conf import settings

from kb.ingestion.parsing import parse_document
from kb.models import Collection, DocumentVersion
from kb.services.ingestion import chunk_windows, embedding_input, finish_jobs, upload_document
from retrieval.embedding import load_encoder


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
        encoder = load_encoder(settings.KB_EMBEDDING_MODEL)
        encode_started = time.perf_counter()
        encoder.encode(
            inputs, batch_size=settings.KB_EMBEDDING_BATCH, normalize_embeddings=True, show_progress_bar=False
        )
        encode_seconds = time.perf_counter() - encode_started
    finally:
        collection.delete()
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
        "embedding_model": settings.KB_EMBEDDING_MODEL,
        "batch_size": settings.KB_EMBEDDING_BATCH,
        "window_tokens": settings.KB_CHUNK_WINDOW,
        "overlap_tokens": settings.KB_CHUNK_OVERLAP,
    }
