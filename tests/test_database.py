"""The schema on real PostgreSQL with pgvector: migrations, the vector column, HNSW, the audit trail."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from pgvector.django import CosineDistance

from kb.models import AuditEvent, Chunk, Collection, Document, DocumentVersion
from retrieval.embedding import embed_passages, embedding_model

pytestmark = pytest.mark.django_db


def test_migrations_run_on_postgresql_18_with_pgvector():
    assert connection.vendor == "postgresql"
    assert connection.pg_version >= 180000
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(part) for part in version.split(".")[:2]) >= (0, 8)


def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_embedding_column_is_sized_from_the_configured_model():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = 'kb_chunk'::regclass AND attname = 'embedding'"
        )
        (column_type,) = cursor.fetchone()
    dimensions = embedding_model(settings.KB_EMBEDDING_MODEL).dimensions
    assert column_type == f"vector({dimensions})"


def make_version(title="Handbook"):
    collection = Collection.objects.create(name=f"{title} collection")
    document = Document.objects.create(collection=collection, title=title)
    return DocumentVersion.objects.create(
        document=document, number=1, original_name=f"{title}.txt", size=1, sha256="0" * 64
    )


def test_nearest_chunk_through_the_hnsw_index():
    passages = [
        "Dogs bark at strangers who come near the house.",
        "The quarterly revenue grew by twelve percent.",
        "Employees may carry over five days of annual leave.",
    ]
    version = make_version()
    vectors = embed_passages(settings.KB_EMBEDDING_MODEL, passages)
    for ordinal, (text, vector) in enumerate(zip(passages, vectors, strict=True)):
        Chunk.objects.create(
            version=version,
            ordinal=ordinal,
            text=text,
            char_start=0,
            char_end=len(text),
            embedding=vector,
        )
    (query,) = embed_passages(settings.KB_EMBEDDING_MODEL, ["How many vacation days roll over?"])
    nearest = Chunk.objects.order_by(CosineDistance("embedding", query))[:2]
    with transaction.atomic(), connection.cursor() as cursor:
        # With three rows the planner would rather scan the table; make it use the index.
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = nearest.explain()
        found = [chunk.text for chunk in nearest]
    assert "chunk_embedding_hnsw" in plan
    assert found[0] == passages[2]
    stored = Chunk.objects.get(ordinal=2).embedding
    assert len(stored) == embedding_model(settings.KB_EMBEDDING_MODEL).dimensions


def test_audit_events_cannot_be_changed_or_deleted():
    event = AuditEvent.objects.create(action="upload", actor_name="alice", object_repr="Handbook")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "upload"
