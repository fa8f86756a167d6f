"""The schema on real PostgreSQL with pgvector: migrations, the vector columns, the audit trail."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from kb.models import AuditEvent
from retrieval.embedding import embedding_model

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


@pytest.mark.parametrize("table", ["kb_chunk", "retrieval_passage"])
def test_embedding_columns_are_sized_from_the_configured_model(table):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = 'embedding'",
            [table],
        )
        (column_type,) = cursor.fetchone()
    dimensions = embedding_model(settings.KB_EMBEDDING_MODEL).dimensions
    assert column_type == f"vector({dimensions})"


def test_audit_events_cannot_be_changed_or_deleted():
    event = AuditEvent.objects.create(action="upload", actor_name="alice", object_repr="Handbook")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing happened")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "upload"
