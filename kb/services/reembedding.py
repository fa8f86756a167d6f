"""Re-embedding every passage with KB_EMBEDDING_MODEL while the knowledge base serves.

retrieval.reembedding keeps the new vectors beside the ones searches use and swaps both vectors
and query model in one transaction at the end; this module supplies what is embedded for each
passage (kb's chunk text with its heading path or title, as ingestion embeds it). A stopped run
resumes after the last batch it stored.
"""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import transaction

from kb.models import Chunk
from kb.services import audit
from kb.services.ingestion import embedding_input
from retrieval import index, reembedding
from retrieval.embedding import embed_passages

logger = logging.getLogger(__name__)


def reembed(
    *,
    actor_name: str,
    model: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Bring the index to `model` (default KB_EMBEDDING_MODEL); returns what was done.

    `on_progress(done, total)` after each stored batch. Raises reembedding.ReembeddingError when
    the model's vectors do not fit the index.
    """
    model = model or settings.KB_EMBEDDING_MODEL
    current = reembedding.state()
    before = current.model
    if before == model and not current.next_model:
        return {"model": model, "previous_model": before, "reembedded": 0}
    reembedding.begin(model)
    audit.record(action="reembed_started", actor_name=actor_name, model=model, previous_model=before)
    embedded = 0
    while True:
        ids = reembedding.pending(settings.KB_EMBEDDING_BATCH)
        if not ids:
            if reembedding.finish():
                break
            continue  # passages indexed while the last batch was embedded
        reembedding.store(model, _vectors(ids, model))
        embedded += len(ids)
        if on_progress is not None:
            on_progress(*reembedding.progress())
    audit.record(action="reembed_finished", actor_name=actor_name, model=model, previous_model=before)
    return {"model": model, "previous_model": before, "reembedded": embedded}


def _vectors(ids: list[int], model: str) -> dict[int, list[float]]:
    """New-model vectors of the passages (a chunk's id is its passage's). A chunk and its passage
    leave together, in one transaction; a passage without a chunk (left by a killed `bench search`)
    is found by no search and would hold the swap back forever, so it is taken out of the index."""
    rows = Chunk.objects.filter(pk__in=ids).values("pk", "version__document__title", "heading_path", "text")
    inputs = {
        row["pk"]: embedding_input(row["version__document__title"], row["heading_path"], row["text"])
        for row in rows
    }
    if orphans := set(ids) - set(inputs):
        logger.warning("removing %d passages without a chunk from the index", len(orphans))
        with transaction.atomic():
            index.remove_passages(orphans)
    return dict(zip(inputs, embed_passages(model, list(inputs.values())), strict=True))
