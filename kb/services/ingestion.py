"""Uploads become indexed chunks: store the file, then parse, chunk, embed and swap in.

`upload_document` is what the admin console, the REST API and the `ingest` command call;
`process_version` is what the Celery task runs. Processing is idempotent and resumable: a
worker killed mid-way leaves the job in its last state, and the next run continues from the
chunks already stored. While a version is processed its worker holds the job's lock
(job_locks), so a job whose state says "active" but whose lock is free has lost its worker.
"""

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import PurePath
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from kb.celery import app as celery_app
from kb.ingestion.chunking import ChunkWindow, chunk_document
from kb.ingestion.document import ParsedDocument
from kb.ingestion.errors import ParseError
from kb.ingestion.parsing import parse_document
from kb.models import Chunk, Collection, Document, DocumentVersion
from kb.services import audit, job_locks
from kb.services.documents import search_scope
from retrieval import index
from retrieval.embedding import count_tokens, embed_passages, token_spans

logger = logging.getLogger(__name__)

State = DocumentVersion.JobState
RUNNING_STATES = [State.PARSING, State.CHUNKING, State.EMBEDDING, State.INDEXING]
ACTIVE_STATES = [State.QUEUED, *RUNNING_STATES]
READ_BLOCK = 1024 * 1024
WORKER_PING_SECONDS = 1.0
POLL_SECONDS = 0.5


class UploadRejected(Exception):
    """An upload that cannot be accepted; the message is meant for the person uploading."""


@dataclass(frozen=True)
class UploadResult:
    version: DocumentVersion
    created: bool  # False when the content was identical to the latest version


def upload_document(
    *,
    collection: Collection,
    name: str,
    content: IO[bytes],
    user=None,
    actor_name: str = "",
    title: str = "",
    request=None,
) -> UploadResult:
    """Store an uploaded file and queue its ingestion.

    A file with the same name in the same collection is a new version of that document;
    identical content (by sha256) to its latest version changes nothing.
    """
    name = _safe_source_name(name)
    path, sha256, size = _store(content)
    with transaction.atomic():
        # The collection's row is the lock that keeps concurrent uploads from overrunning its quota.
        collection = Collection.objects.select_for_update().get(pk=collection.pk)
        document = Document.objects.select_for_update().filter(collection=collection, source=name).first()
        latest = document.versions.order_by("-number").first() if document else None
        if latest is not None and latest.sha256 == sha256 and latest.job_state != State.FAILED:
            return UploadResult(latest, created=False)
        if over_quota := quota_exceeded(collection, size, new_document=document is None):
            raise UploadRejected(over_quota)
        if document is None:
            document = Document.objects.create(
                collection=collection, title=title or PurePath(name).stem, source=name, created_by=user
            )
        version = DocumentVersion.objects.create(
            document=document,
            number=latest.number + 1 if latest else 1,
            file=path,
            original_name=PurePath(name).name,
            size=size,
            sha256=sha256,
            created_by=user,
        )
        audit.record(
            action="upload",
            actor=user,
            actor_name=actor_name,
            target=document,
            request=request,
            version=version.number,
            size=size,
        )
        transaction.on_commit(partial(queue_version, version.pk))
    return UploadResult(version, created=True)


def quota_exceeded(collection: Collection, size: int, *, new_document: bool) -> str:
    """Why a file of `size` bytes cannot be added to the collection, or "" when it can. Stored
    bytes count each file the collection's versions keep once (a re-index shares its file)."""
    if new_document and collection.max_documents is not None:
        if collection.documents.count() >= collection.max_documents:
            return (
                f"the collection {collection} already holds its quota of {collection.max_documents} documents"
            )
    if collection.max_bytes is not None:
        files = DocumentVersion.objects.filter(document__collection=collection).values_list("sha256", "size")
        stored = sum(size for _, size in files.distinct())
        if stored + size > collection.max_bytes:
            return (
                f"the collection {collection} would exceed its storage quota of "
                f"{_megabytes(collection.max_bytes)} ({_megabytes(stored)} used, "
                f"this file is {_megabytes(size)})"
            )
    return ""


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def reindex_document(document: Document, *, user=None, request=None) -> DocumentVersion:
    """Parse, chunk and embed the current file again (after a parser or chunking change) as a new
    version, swapped in like any upload: searches use the old chunks until the new ones are in."""
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=document.pk)
        latest = document.versions.order_by("-number").first()
        source = document.current_version or latest
        if source is None:
            raise UploadRejected("the document has no file to index")
        version = DocumentVersion.objects.create(
            document=document,
            number=latest.number + 1,
            file=source.file.name,
            original_name=source.original_name,
            size=source.size,
            sha256=source.sha256,
            created_by=user,
        )
        audit.record(action="reindex", actor=user, target=document, request=request, version=version.number)
        transaction.on_commit(partial(queue_version, version.pk))
    return version


def _safe_source_name(name: str) -> str:
    """A relative path without '..' or leading '/', used to recognise re-uploads of a document."""
    parts = [part for part in PurePath(name.replace("\\", "/")).parts if part not in ("/", "..", ".")]
    return "/".join(parts)[-1000:] or "untitled"


def queue_version(version_id: int) -> None:
    """Send the job to the workers. While the broker is unreachable the job stays queued in the
    database, and the workers' stalled-job check sends it after KB_QUEUED_JOB_TIMEOUT."""
    from kb.tasks import ingest_version

    try:
        ingest_version.delay(version_id)
    except OperationalError as error:
        logger.warning("job %s not sent, the task queue is unreachable: %s", version_id, error)


def _store(content: IO[bytes]) -> tuple[str, str, int]:
    """Save the bytes content-addressed (uploads/ab/abcdef…); return (path, sha256, size)."""
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as spool:
        while block := content.read(READ_BLOCK):
            size += len(block)
            if size > settings.KB_MAX_UPLOAD_BYTES:
                raise UploadRejected(
                    f"the file is larger than the limit of {settings.KB_MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
                )
            digest.update(block)
            spool.write(block)
        if size == 0:
            raise UploadRejected("the file is empty")
        sha256 = digest.hexdigest()
        path = f"uploads/{sha256[:2]}/{sha256}"
        if not default_storage.exists(path):
            spool.seek(0)
            default_storage.save(path, File(spool))
    return path, sha256, size


# --- processing (the Celery task) ----------------------------------------------------------------


def process_version(version_id: int) -> None:
    """Run one version through parse → chunk → embed → swap. Safe to call again at any point."""
    with job_locks.held(job_locks.INGESTION, version_id) as locked:
        if not locked:
            logger.info("version %s is being processed by another worker", version_id)
            return
        version = DocumentVersion.objects.select_related("document").filter(pk=version_id).first()
        if version is None or version.job_state in (State.DONE, State.FAILED):
            return  # deleted meanwhile, or already finished by an earlier delivery of this task
        _process(version)


def _process(version: DocumentVersion) -> None:
    try:
        windows = _parse_and_chunk(version)
        _embed_and_store(version, windows)
        _swap_in(version)
    except ParseError as error:
        _fail(version, str(error))
    except SoftTimeLimitExceeded:
        minutes = settings.KB_INGEST_TIME_LIMIT // 60
        _fail(version, f"processing took longer than the limit of {minutes} minutes")
    except DatabaseError:
        raise  # transient (connection lost, server restarting): the task is retried
    except Exception as error:
        # A file that trips a library in a way no parser anticipated must still end the
        # job with a reason instead of being retried forever.
        logger.exception("version %s failed unexpectedly", version.pk)
        _fail(version, f"could not process the file ({type(error).__name__})")


def finish_jobs(version_ids: list[int], *, on_progress: Callable[[int], None] | None = None) -> bool:
    """Return once every job has ended (done or failed); `on_progress` gets the number ended so far.

    When no worker answers a ping the jobs are processed in this process; one that a busy worker
    took meanwhile is skipped here (its lock is held) and waited for. Returns whether workers were
    running.
    """

    def ended() -> int:
        active = DocumentVersion.objects.filter(pk__in=version_ids, job_state__in=ACTIVE_STATES).count()
        done = len(version_ids) - active
        if on_progress is not None:
            on_progress(done)
        return done

    workers = bool(celery_app.control.ping(timeout=WORKER_PING_SECONDS))
    if not workers:
        for pk in version_ids:
            process_version(pk)
            ended()
    while ended() < len(version_ids):
        time.sleep(POLL_SECONDS)
    return workers


def stalled_versions() -> list[int]:
    """Jobs that no worker holds although they should be running: their worker died.

    A job still queued has no holder either, because no worker has reached it yet; it counts
    only after waiting longer than KB_QUEUED_JOB_TIMEOUT (its message may have been lost).
    """
    queued_before = timezone.now() - timedelta(seconds=settings.KB_QUEUED_JOB_TIMEOUT)
    candidates = list(
        DocumentVersion.objects.filter(
            Q(job_state__in=RUNNING_STATES) | Q(job_state=State.QUEUED, updated_at__lt=queued_before)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return job_locks.unheld(job_locks.INGESTION, candidates)


def requeue_stalled_versions() -> list[int]:
    """Queue every stalled job again; it resumes after the chunks it had already stored."""
    stalled = stalled_versions()
    if stalled:
        logger.warning("re-queueing ingestion jobs whose worker died: %s", stalled)
        DocumentVersion.objects.filter(pk__in=stalled).update(
            job_state=State.QUEUED, updated_at=timezone.now()
        )
    for pk in stalled:
        queue_version(pk)
    return stalled


def _set_state(version: DocumentVersion, state: str, **fields) -> None:
    DocumentVersion.objects.filter(pk=version.pk).update(job_state=state, updated_at=timezone.now(), **fields)
    version.job_state = state
    for name, value in fields.items():
        setattr(version, name, value)


def chunk_windows(parsed: ParsedDocument) -> list[ChunkWindow]:
    """The chunks of a parsed document, with the configured model, window and overlap."""
    model = settings.KB_EMBEDDING_MODEL
    return chunk_document(
        parsed,
        window=settings.KB_CHUNK_WINDOW,
        overlap=settings.KB_CHUNK_OVERLAP,
        count_tokens=partial(count_tokens, model),
        token_spans=partial(token_spans, model),
    )


def _parse_and_chunk(version: DocumentVersion) -> list[ChunkWindow]:
    _set_state(version, State.PARSING)
    with default_storage.open(version.file.name, "rb") as file:
        data = file.read()
    parsed = parse_document(data, filename=version.original_name)
    _set_state(version, State.CHUNKING, mime=parsed.mime, parsed_text=parsed.text)
    if parsed.title and version.document.title == PurePath(version.original_name).stem:
        # The title was only the file name: the document's own title is better.
        Document.objects.filter(pk=version.document_id).update(title=parsed.title[:500])
        version.document.title = parsed.title[:500]
    return chunk_windows(parsed)


def _embed_and_store(version: DocumentVersion, windows: list[ChunkWindow]) -> None:
    """Embed in batches and store each batch at once; resume after the chunks already stored."""
    stored = dict(version.chunks.values_list("ordinal", "char_start"))
    if any(
        ordinal >= len(windows) or windows[ordinal].char_start != start for ordinal, start in stored.items()
    ):
        # Left by a run with other chunking settings: start this version's chunks afresh.
        version.chunks.all().delete()
        stored = {}
    _set_state(version, State.EMBEDDING, chunks_total=len(windows), chunks_done=len(stored))
    todo = [(ordinal, window) for ordinal, window in enumerate(windows) if ordinal not in stored]
    model = settings.KB_EMBEDDING_MODEL
    batch_size = settings.KB_EMBEDDING_BATCH
    for first in range(0, len(todo), batch_size):
        batch = todo[first : first + batch_size]
        inputs = [
            embedding_input(version.document.title, window.heading_path, window.text) for _, window in batch
        ]
        vectors = embed_passages(model, inputs)
        token_counts = count_tokens(model, [window.text for _, window in batch])
        Chunk.objects.bulk_create(
            [
                Chunk(
                    version=version,
                    ordinal=ordinal,
                    text=window.text,
                    page=window.page,
                    char_start=window.char_start,
                    char_end=window.char_end,
                    heading_path=window.heading_path,
                    entities=window.entities,
                    language=window.language,
                    token_count=tokens,
                    embedding=vector,
                )
                for (ordinal, window), vector, tokens in zip(batch, vectors, token_counts, strict=True)
            ]
        )
        _set_state(version, State.EMBEDDING, chunks_done=len(stored) + first + len(batch))


def embedding_input(title: str, heading_path: list[str], text: str) -> str:
    """What is embedded and indexed for a chunk: its heading path (or the document's title) gives
    the passage its context. Questions name the topic far more often than a passage repeats it."""
    context = " > ".join(heading_path) or title
    return f"{context}\n{text}"


def _swap_in(version: DocumentVersion) -> None:
    """Make the version the document's current one and drop older versions' chunks, atomically:
    searches see the old chunks or the new ones, never a mix and never none."""
    _set_state(version, State.INDEXING)
    with transaction.atomic():
        document = Document.objects.select_for_update().get(pk=version.document_id)
        current = document.current_version
        if current is not None and current.number > version.number:
            # A newer upload finished first; this one is history already.
            version.chunks.all().delete()
        else:
            document.current_version = version
            document.status = Document.Status.READY
            document.save(update_fields=["current_version", "status", "updated_at"])
            older = Chunk.objects.filter(version__document=document, version__number__lt=version.number)
            index.remove_passages(older.values_list("id", flat=True))
            older.delete()
            index.add_passages(
                search_scope(document),
                (
                    index.NewPassage(
                        id=chunk_id,
                        text=embedding_input(document.title, heading_path, text),
                        embedding=embedding,
                    )
                    for chunk_id, text, heading_path, embedding in version.chunks.values_list(
                        "id", "text", "heading_path", "embedding"
                    )
                ),
            )
            version.chunks.update(embedding=None)
        _set_state(version, State.DONE, error="")


def _fail(version: DocumentVersion, reason: str) -> None:
    logger.info("version %s failed: %s", version.pk, reason)
    version.chunks.all().delete()
    _set_state(version, State.FAILED, error=reason)
    Document.objects.filter(pk=version.document_id, current_version__isnull=True).update(
        status=Document.Status.FAILED
    )
