"""Which embedding model the index holds, and replacing it while the index serves.

Queries are embedded with the model the passages' vectors come from (`EmbeddingState.model`), never
with the configured one directly: after KB_EMBEDDING_MODEL changes, searches go on with the old
model until a re-embedding has stored a NextEmbedding of every passage with the new one; then one
transaction swaps the vectors and the model together, so no search compares a query with vectors
of another model. Passages indexed meanwhile are re-embedded before the swap (the swap waits for
them), and a stopped re-embedding resumes where it stopped.
"""

from django.conf import settings
from django.db import connection, transaction

from retrieval import cache
from retrieval.embedding import embedding_model
from retrieval.models import EmbeddingState, NextEmbedding, Passage


class ReembeddingError(Exception):
    """The model cannot replace the index's (its vectors do not fit the vector columns)."""


# The one row's primary key.
STATE = 1


def state() -> EmbeddingState:
    """The row the migration made, made again with the configured model where it is missing (a
    flushed database: whatever vectors it gets next come from that model)."""
    defaults = {"model": settings.KB_EMBEDDING_MODEL}
    return EmbeddingState.objects.get_or_create(pk=STATE, defaults=defaults)[0]


def active_model() -> str:
    """The model the stored vectors come from: the one to embed queries and new passages with."""
    return state().model


def locked_active_model() -> str:
    """`active_model`, held until the caller's transaction ends: a swap of models waits for it, so
    vectors made with this model and stored in that transaction are never left behind by a swap."""
    state()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT model FROM {EmbeddingState._meta.db_table} WHERE id = %s FOR SHARE", [STATE])
        return cursor.fetchone()[0]


def begin(model: str) -> EmbeddingState:
    """Start re-embedding with `model`, or go on with the one already under way with it."""
    wanted = embedding_model(model).dimensions
    columns = Passage._meta.get_field("embedding").dimensions
    if wanted != columns:
        raise ReembeddingError(
            f"{model} makes {wanted}-dimensional vectors and the index holds {columns}: "
            "the vector columns need a migration first"
        )
    with transaction.atomic():
        current = _locked_state()
        if current.next_model != model:
            # Another target than a stopped run's: its vectors are of no use.
            NextEmbedding.objects.all().delete()
            current.next_model = model
            current.save(update_fields=["next_model"])
    return current


def _locked_state() -> EmbeddingState:
    state()
    return EmbeddingState.objects.select_for_update().get(pk=STATE)


def pending(limit: int) -> list[int]:
    """Ids of passages without a vector of the new model yet, at most `limit`."""
    ids = Passage.objects.filter(next_embedding=None).order_by("id").values_list("id", flat=True)
    return list(ids[:limit])


def progress() -> tuple[int, int]:
    """Passages with a vector of the new model, and passages."""
    return Passage.objects.exclude(next_embedding=None).count(), Passage.objects.count()


def store(model: str, vectors: dict[int, list[float]]) -> None:
    """Keep new-model vectors of passages; ignored when the re-embedding was restarted with another."""
    with transaction.atomic():
        if _locked_state().next_model != model:
            return
        # Locked, so that none is removed before this commits; ones removed already are left out.
        present = Passage.objects.select_for_update().filter(id__in=list(vectors))
        present = present.values_list("id", flat=True)
        rows = [NextEmbedding(passage_id=passage_id, embedding=vectors[passage_id]) for passage_id in present]
        NextEmbedding.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)


def finish() -> bool:
    """Swap the new vectors and model in, in one transaction, if every passage has its new vector;
    False (nothing changed) when passages indexed meanwhile still need theirs."""
    with transaction.atomic():
        current = _locked_state()
        if not current.next_model:
            return True
        with connection.cursor() as cursor:
            # New passages wait until the swap is done; searches go on reading the old vectors.
            cursor.execute(f"LOCK TABLE {Passage._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")
        if Passage.objects.filter(next_embedding=None).exists():
            return False
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Passage._meta.db_table} AS passage SET embedding = next.embedding"
                f" FROM {NextEmbedding._meta.db_table} AS next WHERE next.passage_id = passage.id"
            )
        NextEmbedding.objects.all().delete()
        current.model, current.next_model = current.next_model, ""
        current.save(update_fields=["model", "next_model"])
        cache.scopes_changed(set(Passage.objects.values_list("scope", flat=True).distinct()))
    return True
