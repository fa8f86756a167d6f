"""Uploads through the ingestion service, processed by real Celery workers into PostgreSQL."""

import io
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from kb.models import AuditEvent, Chunk, Collection, Document, DocumentVersion
from kb.selectors import current_chunks
from kb.services.documents import HIDDEN_SCOPE, set_hidden
from kb.services.ingestion import (
    UploadRejected,
    process_version,
    requeue_stalled_versions,
    stalled_versions,
    upload_document,
)
from kb.services.job_locks import INGESTION
from kb.stack.layout import PROJECT_DIR
from kb.tasks import embed_version
from retrieval.bm25 import bm25_top_k
from retrieval.models import Passage, PostingBlock, ScopeStats
from tests.conftest import WorkerProcess, database_url, purge_task_queues

State = DocumentVersion.JobState


def wait_for(condition, timeout: float = 120, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{message} not reached within {timeout} s")


def wait_until_ended(version: DocumentVersion, timeout: float = 180) -> DocumentVersion:
    wait_for(
        lambda: DocumentVersion.objects.get(pk=version.pk).job_state in (State.DONE, State.FAILED),
        timeout,
        f"end of job {version.pk}",
    )
    return DocumentVersion.objects.get(pk=version.pk)


def upload(collection, name: str, data: bytes) -> DocumentVersion:
    return upload_document(collection=collection, name=name, content=io.BytesIO(data)).version


HANDBOOK = (
    "# Staff handbook\n\n## Leave\n\n"
    "Employees may carry over five days of annual leave into the next year.\n\n"
    "## Equipment\n\nLaptops are replaced every three years by the IT department in Zurich.\n"
)


@pytest.mark.django_db(transaction=True)
def test_upload_is_indexed_by_a_real_worker(celery_worker):
    collection = Collection.objects.create(name="HR")
    version = wait_until_ended(upload(collection, "handbook.md", HANDBOOK.encode()))
    assert version.job_state == State.DONE, version.error
    assert version.chunks_done == version.chunks_total == version.chunks.count() > 0
    document = Document.objects.get(pk=version.document_id)
    assert (document.current_version_id, document.status, document.title) == (
        version.pk,
        "ready",
        "Staff handbook",
    )
    leave = version.chunks.get(text__contains="five days")
    assert leave.heading_path == ["Staff handbook", "Leave"]
    assert version.parsed_text[leave.char_start : leave.char_end] == leave.text
    assert leave.token_count > 0 and leave.language == "en"
    # Its sentences, kept for answers to quote: the heading and the one under it.
    assert [leave.text[start:end] for start, end in leave.sentences] == [
        "Leave",
        "Employees may carry over five days of annual leave into the next year.",
    ]
    # The vector moved into the search index with the swap.
    assert leave.embedding is None and len(Passage.objects.get(pk=leave.pk).embedding) == 384
    assert AuditEvent.objects.filter(action="upload", object_id=str(document.pk)).exists()


@pytest.mark.django_db
def test_identical_content_is_a_no_op_and_new_content_a_new_version():
    collection = Collection.objects.create(name="HR")
    first = upload_document(collection=collection, name="handbook.md", content=io.BytesIO(HANDBOOK.encode()))
    again = upload_document(collection=collection, name="handbook.md", content=io.BytesIO(HANDBOOK.encode()))
    changed = upload_document(
        collection=collection,
        name="handbook.md",
        content=io.BytesIO(HANDBOOK.replace("five", "ten").encode()),
    )
    assert first.created and not again.created and again.version == first.version
    assert changed.created and changed.version.number == 2
    assert Document.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "limit", "reason"),
    [(b"", None, "empty"), (b"x" * 2048, 1024, "larger than the limit")],
)
def test_empty_and_oversized_uploads_are_rejected_and_nothing_is_stored(settings, data, limit, reason):
    if limit:
        settings.KB_MAX_UPLOAD_BYTES = limit
    with pytest.raises(UploadRejected, match=reason):
        upload(Collection.objects.create(name="HR"), "file.txt", data)
    assert not Document.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_hostile_file_fails_with_a_reason_and_the_worker_goes_on(celery_worker):
    collection = Collection.objects.create(name="HR")
    garbage = wait_until_ended(upload(collection, "report.docx", os.urandom(4096)))
    good = wait_until_ended(upload(collection, "handbook.md", HANDBOOK.encode()))
    assert garbage.job_state == State.FAILED and garbage.error
    assert Document.objects.get(pk=garbage.document_id).status == "failed"
    assert not garbage.chunks.exists()
    assert good.job_state == State.DONE


@pytest.mark.django_db(transaction=True)
def test_new_version_swaps_in_atomically_under_concurrent_reads(celery_worker):
    collection = Collection.objects.create(name="HR")
    paragraphs = "\n\n".join(f"Rule {i} of the old policy says alpha." for i in range(40))
    wait_until_ended(upload(collection, "policy.md", f"# Policy\n\n{paragraphs}\n".encode()))
    seen, stop = [], threading.Event()

    def read():
        try:
            while not stop.is_set():
                seen.append(set(current_chunks().values_list("version__number", flat=True)))
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        new = upload(collection, "policy.md", f"# Policy\n\n{paragraphs.replace('old', 'new')}\n".encode())
        assert wait_until_ended(new).job_state == State.DONE
        time.sleep(0.2)
    finally:
        stop.set()
        reader.join()
    assert {1} in seen and {2} in seen
    assert all(versions in ({1}, {2}) for versions in seen), "a reader saw a mix or nothing"
    assert set(Chunk.objects.values_list("version__number", flat=True)) == {2}


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_ingest_resumes_without_losing_or_duplicating_chunks(celery_worker):
    celery_worker.stop()  # the doomed worker alone must take the job
    collection = Collection.objects.create(name="Archive")
    body = "\n\n".join(
        f"Section {i} states that contract {i} renews every {i % 12 + 1} months unless cancelled in writing."
        for i in range(400)
    )
    doomed = WorkerProcess(f"doomed-{os.getpid()}@localhost", KB_EMBEDDING_BATCH="4")
    doomed.start()
    try:
        version = upload(collection, "contracts.md", f"# Contracts\n\n{body}\n".encode())
        wait_for(
            lambda: DocumentVersion.objects.get(pk=version.pk).chunks_done >= 8, 180, "embedding under way"
        )
    finally:
        doomed.kill()
    killed = DocumentVersion.objects.get(pk=version.pk)
    assert killed.job_state == State.EMBEDDING and 0 < killed.chunks_done < killed.chunks_total
    wait_for(lambda: version.pk in stalled_versions(), 30, "the dead worker's lock to be released")

    celery_worker.start()  # a new worker picks up the stalled job when it starts
    finished = wait_until_ended(version, timeout=300)
    assert finished.job_state == State.DONE, finished.error
    ordinals = sorted(finished.chunks.values_list("ordinal", flat=True))
    assert ordinals == list(range(finished.chunks_total))
    assert finished.chunks_done == finished.chunks_total


@pytest.mark.django_db(transaction=True)
def test_a_job_over_the_time_limit_fails_with_a_reason(celery_worker, tmp_path):
    celery_worker.stop()  # only the worker with the short limit may take the job
    # Celery sends the limits with each task message, so the queueing process (here the ingest
    # command) and the worker both read the limit, as every process of a deployment does.
    limited = WorkerProcess(f"limited-{os.getpid()}@localhost", pool="prefork", KB_INGEST_TIME_LIMIT="2")
    limited.start()
    try:
        long_file = tmp_path / "long.md"
        long_file.write_text(
            "\n\n".join(f"Clause {i} keeps the contract in force for {i} more days." for i in range(3000))
        )
        subprocess.run(
            [sys.executable, "manage.py", "ingest", str(long_file), "--collection", "Slow"],
            env=limited.env,
            cwd=PROJECT_DIR,
            check=True,
            capture_output=True,
        )
        version = wait_until_ended(DocumentVersion.objects.get(original_name="long.md"))
    finally:
        limited.stop()
    assert version.job_state == State.FAILED
    assert version.error == "processing took longer than the limit of 0 minutes"
    assert not version.chunks.exists()


@pytest.mark.django_db
def test_bm25_index_follows_new_versions_and_deletion():
    collection, elsewhere = Collection.objects.create(name="HR"), Collection.objects.create(name="Other")

    def found(query: str, scope: Collection) -> list[int]:
        return [passage_id for passage_id, _ in bm25_top_k(query, scopes=[scope.pk], k=10)]

    first = upload(collection, "lease.md", b"# Lease\n\nTenants pay the rent monthly.")
    process_version(first.pk)
    assert found("rent", collection) == list(first.chunks.values_list("id", flat=True))
    second = upload(collection, "lease.md", b"# Lease\n\nTenants pay a deposit once.")
    process_version(second.pk)
    assert found("rent", collection) == []
    assert found("deposit", collection) == list(second.chunks.values_list("id", flat=True))
    assert found("deposit", elsewhere) == []
    Document.objects.get(pk=second.document_id).delete()
    assert found("deposit", collection) == []
    assert not ScopeStats.objects.filter(scope=collection.pk).exists()


@pytest.mark.django_db
def test_a_collection_deleted_in_the_admin_leaves_the_index_with_its_hidden_documents(client, admin_user):
    doomed, kept = Collection.objects.create(name="Old policies"), Collection.objects.create(name="Current")
    versions = [
        upload(doomed, "rent.md", b"# Rent\n\nTenants pay the rent monthly."),
        upload(doomed, "deposit.md", b"# Deposit\n\nTenants pay a rent deposit once."),
        upload(kept, "rent.md", b"# Rent\n\nThe rent is due on the first day."),
        upload(kept, "hidden.md", b"# Hidden\n\nA hidden note on rent."),
    ]
    for version in versions:
        process_version(version.pk)
    set_hidden(versions[1].document, True, user=admin_user)
    set_hidden(versions[3].document, True, user=admin_user)
    client.force_login(admin_user)

    response = client.post(f"/admin/kb/collection/{doomed.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Chunk.objects.filter(version__document__collection_id=doomed.pk).exists()
    assert not PostingBlock.objects.filter(scope=doomed.pk).exists()
    kept_passages = [(versions[2].chunks.get().pk, kept.pk), (versions[3].chunks.get().pk, HIDDEN_SCOPE)]
    assert set(Passage.objects.values_list("id", "scope")) == set(kept_passages)
    for passage, scope in kept_passages:
        assert [pid for pid, _ in bm25_top_k("rent", scopes=[scope], k=10)] == [passage]
    assert AuditEvent.objects.filter(action="delete", object_repr="Old policies").exists()


@pytest.mark.django_db
def test_stalled_jobs_are_the_running_ones_no_worker_holds_and_queued_ones_waiting_too_long(
    settings, idle_queues
):
    collection = Collection.objects.create(name="HR")

    def job(name: str, state: str, waited: float | None = None) -> int:
        """A job in `state`, waiting for a worker for `waited` seconds (None: a worker runs it)."""
        version = upload(collection, name, f"# {name}\n\nSome text.".encode())
        queued_at = None if waited is None else timezone.now() - timedelta(seconds=waited)
        DocumentVersion.objects.filter(pk=version.pk).update(job_state=state, queued_at=queued_at)
        return version.pk

    dead = job("dead.md", State.EMBEDDING)
    alive = job("alive.md", State.EMBEDDING)
    waiting = job("waiting.md", State.QUEUED, waited=0)
    waiting_to_index = job("embedded.md", State.INDEXING, waited=0)
    lost = job("lost.md", State.QUEUED, waited=settings.KB_QUEUED_JOB_TIMEOUT + 60)
    lost_between_stages = job("parsed.md", State.EMBEDDING, waited=settings.KB_QUEUED_JOB_TIMEOUT + 60)
    job("finished.md", State.DONE)
    with psycopg.connect(database_url(connection.settings_dict), autocommit=True) as other_worker:
        other_worker.execute("SELECT pg_advisory_lock(%s, %s)", [INGESTION, alive])
        # Behind a backlog of the embed queue its message is likely still there: not lost yet.
        embed_version.delay(0)
        assert stalled_versions() == [dead, lost]
        purge_task_queues()
        assert stalled_versions() == [dead, lost, lost_between_stages]
        assert requeue_stalled_versions() == [dead, lost, lost_between_stages]
        # Queued again at the stage where it stopped, so that it resumes there.
        requeued = DocumentVersion.objects.get(pk=dead)
        assert requeued.job_state == State.EMBEDDING and requeued.queued_at is not None
        assert stalled_versions() == []  # queued again just now: no second message
    assert waiting not in stalled_versions() and waiting_to_index not in stalled_versions()


@pytest.mark.django_db(transaction=True)
def test_ingest_command_reports_every_document(tmp_path, capsys, celery_worker):
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "handbook.md").write_text(HANDBOOK)
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(500))
    (tmp_path / "empty.txt").write_bytes(b"")
    call_command("ingest", str(tmp_path), collection="Imported", wait=True)
    lines = sorted(capsys.readouterr().out.splitlines())
    assert any(line.startswith("done") and "handbook.md" in line for line in lines), lines
    assert any(line.startswith("failed") and "broken.pdf" in line for line in lines), lines
    assert any(line.startswith("rejected") and "empty.txt: the file is empty" in line for line in lines)
    assert Document.objects.get(source="policies/handbook.md").collection.name == "Imported"
