"""Uploads become indexed chunks: store the file, then parse, chunk, embed and swap in.

`upload_document` is what the admin console, the REST API and the `ingest` command call.
Processing runs in three stages, each a Celery task on its own queue so that each kind of
worker scales alone: parse (parse, chunk, store the chunks), embed (the encoder, the costly
part) and index (the swap into the search index). `advance` runs one stage and queues the next;
`process_version` runs them all in this process. Every stage is idempotent and resumable: a
worker killed mid-way leaves the job in its last state, and the next run continues from the
chunks already stored or embedded. While a stage runs its worker holds the job's lock
(job_locks), so a job that is neither waiting for a worker (`queued_at`) nor locked has lost its
worker.
"""

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
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
from kb.services import audit, job_locks, task_queues
from kb.services.documents import search_scope
from retrieval import index
from retrieval.embedding import count_tokens, embed_passages, token_spans
from retrieval.reembedding import active_model, locked_active_model

logger = logging.getLogger(__name__)

State = DocumentVersion.JobState
RUNNING_STATES = [State.PARSING, State.CHUNKING, State.EMBEDDING, State.INDEXING]
ACTIVE_STATES = [State.QUEUED, *RUNNING_STATES]


class Stage(StrEnum):
    """The stages of a job; each is a task on the Celery queue of the same name."""

    PARSE = "parse"
    EMBED = "embed"
    INDEX = "index"


# The stage that picks up a job in each state (where a worker killed mid-stage left it too).
STAGE_OF = {
    State.QUEUED: Stage.PARSE,
    State.PARSING: Stage.PARSE,
    State.CHUNKING: Stage.PARSE,
    State.EMBEDDING: Stage.EMBED,
    State.INDEXING: Stage.INDEX,
}
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
    """Send the job to the workers of its next stage. While the broker is unreachable the job
    waits in the database, and the workers' stalled-job check sends it after KB_QUEUED_JOB_TIMEOUT."""
    from kb import tasks

    stage = _next_stage(version_id)
    if stage is None:
        return  # finished or deleted meanwhile
    task = {
        Stage.PARSE: tasks.parse_version,
        Stage.EMBED: tasks.embed_version,
        Stage.INDEX: tasks.index_version,
    }[stage]
    try:
        task.delay(version_id)
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


# --- processing (the Celery tasks) ---------------------------------------------------------------


def advance(version_id: int, stage: Stage) -> None:
    """What each stage's task runs: the stage, then the job goes to the next stage's queue."""
    if run_stage(version_id, stage):
        queue_version(version_id)


def process_version(version_id: int) -> None:
    """Run every stage left of the job in this process. Safe to call again at any point."""
    while (stage := _next_stage(version_id)) is not None and run_stage(version_id, stage):
        pass


def _next_stage(version_id: int) -> Stage | None:
    state = DocumentVersion.objects.filter(pk=version_id).values_list("job_state", flat=True).first()
    return STAGE_OF.get(state)


def run_stage(version_id: int, stage: Stage) -> bool:
    """Run `stage` if the job stands there and no other worker holds it; return whether the job
    moved on to a stage still to run. A stage that another delivery already ran is skipped."""
    with job_locks.held(job_locks.INGESTION, version_id) as locked:
        if not locked:
            logger.info("version %s is being processed by another worker", version_id)
            return False
        version = DocumentVersion.objects.select_related("document").filter(pk=version_id).first()
        if version is None or STAGE_OF.get(version.job_state) != stage:
            return False  # deleted meanwhile, or this stage is behind it already
        _set_state(version, version.job_state, queued_at=None)
        work = {Stage.PARSE: _parse_and_chunk, Stage.EMBED: _embed, Stage.INDEX: _swap_in}[stage]
        _run_safely(version, work)
        if version.job_state in (State.DONE, State.FAILED):
            return False
        # Marked as waiting while the lock is still held, so no stalled-job check sees it unowned.
        _set_state(version, version.job_state, queued_at=timezone.now())
        return True


def _run_safely(version: DocumentVersion, stage: Callable[[DocumentVersion], None]) -> None:
    try:
        stage(version)
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

    A job waiting for a worker of its next stage has no holder either, because no worker has
    reached it yet; it counts only after waiting longer than KB_QUEUED_JOB_TIMEOUT while its
    stage's queue is empty (its message was lost; see task_queues).
    """
    queued_before = timezone.now() - timedelta(seconds=settings.KB_QUEUED_JOB_TIMEOUT)
    candidates = list(
        DocumentVersion.objects.filter(job_state__in=ACTIVE_STATES)
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=queued_before))
        .order_by("pk")
        .values_list("pk", "job_state", "queued_at")
    )
    stages_waited_for = {STAGE_OF[state] for _, state, queued_at in candidates if queued_at is not None}
    drained = {stage for stage in stages_waited_for if task_queues.waiting_messages(stage) == 0}
    lost_or_running = [
        pk for pk, state, queued_at in candidates if queued_at is None or STAGE_OF[state] in drained
    ]
    return job_locks.unheld(job_locks.INGESTION, lost_or_running)


def requeue_stalled_versions() -> list[int]:
    """Queue every stalled job again at the stage it stopped in; it resumes after the chunks it
    had already stored or embedded."""
    stalled = stalled_versions()
    if stalled:
        logger.warning("re-queueing ingestion jobs whose worker died: %s", stalled)
        DocumentVersion.objects.filter(pk__in=stalled).update(queued_at=timezone.now())
    for pk in stalled:
        queue_version(pk)
    return stalled


def _set_state(version: DocumentVersion, state: str, **fields) -> None:
    DocumentVersion.objects.filter(pk=version.pk).update(job_state=state, updated_at=timezone.now(), **fields)
    version.job_state = state
    for name, value in fields.items():
        setattr(version, name, value)


def chunk_windows(parsed: ParsedDocument, collection: Collection | None = None) -> list[ChunkWindow]:
    """The chunks of a parsed document, with the configured model and the collection's window and
    overlap (without one: the site's)."""
    model = settings.KB_EMBEDDING_MODEL
    window, overlap = (
        collection.chunking if collection else (settings.KB_CHUNK_WINDOW, settings.KB_CHUNK_OVERLAP)
    )
    return chunk_document(
        parsed,
        window=window,
        overlap=overlap,
        count_tokens=partial(count_tokens, model),
        token_spans=partial(token_spans, model),
    )


def _parse_and_chunk(version: DocumentVersion) -> None:
    """The parse stage: the file's text and its chunks, stored without embeddings."""
    _set_state(version, State.PARSING)
    with default_storage.open(version.file.name, "rb") as file:
        data = file.read()
    parsed = parse_document(data, filename=version.original_name)
    _set_state(version, State.CHUNKING, mime=parsed.mime, parsed_text=parsed.text)
    if parsed.title and version.document.title == PurePath(version.original_name).stem:
        # The title was only the file name: the document's own title is better.
        Document.objects.filter(pk=version.document_id).update(title=parsed.title[:500])
        version.document.title = parsed.title[:500]
    windows = chunk_windows(parsed, version.document.collection)
    _store_chunks(version, windows)
    embedded = version.chunks.filter(embedding__isnull=False).count()
    _set_state(version, State.EMBEDDING, chunks_total=len(windows), chunks_done=embedded)


def _store_chunks(version: DocumentVersion, windows: list[ChunkWindow]) -> None:
    """Store the version's chunks in one transaction. Chunks a killed run stored at the same
    positions are kept with their embeddings; ones from other chunking settings are replaced."""
    stored = dict(version.chunks.values_list("ordinal", "char_start"))
    if stored == {ordinal: window.char_start for ordinal, window in enumerate(windows)}:
        return
    token_counts = count_tokens(settings.KB_EMBEDDING_MODEL, [window.text for window in windows])
    with transaction.atomic():
        version.chunks.all().delete()
        Chunk.objects.bulk_create(
            (
                Chunk(
                    version=version,
                    ordinal=ordinal,
                    text=window.text,
                    page=window.page,
                    char_start=window.char_start,
                    char_end=window.char_end,
                    heading_path=window.heading_path,
                    entities=window.entities,
                    sentences=window.sentences,
                    language=window.language,
                    token_count=tokens,
                )
                for ordinal, (window, tokens) in enumerate(zip(windows, token_counts, strict=True))
            ),
            batch_size=1000,
        )


def _embed(version: DocumentVersion) -> None:
    """The embed stage: embed the chunks still without a vector, a batch at a time, each batch
    stored at once, so a killed run resumes after the last batch it stored. With the index's model
    (not KB_EMBEDDING_MODEL, which a re-embedding may not have brought the index to yet)."""
    model = active_model()
    if version.embedded_with != model:
        # Vectors a killed run staged before the index changed models are of no use.
        version.chunks.exclude(embedding=None).update(embedding=None)
        _set_state(version, State.EMBEDDING, embedded_with=model)
    todo = list(
        version.chunks.filter(embedding__isnull=True).order_by("ordinal").only("text", "heading_path")
    )
    done = version.chunks_total - len(todo)
    batch_size = settings.KB_EMBEDDING_BATCH
    for first in range(0, len(todo), batch_size):
        batch = todo[first : first + batch_size]
        _embed_chunks(version, batch, model)
        _set_state(version, State.EMBEDDING, chunks_done=done + first + len(batch))
    _set_state(version, State.INDEXING)


def _embed_chunks(version: DocumentVersion, chunks: list[Chunk], model: str) -> None:
    inputs = [embedding_input(version.document.title, chunk.heading_path, chunk.text) for chunk in chunks]
    for chunk, vector in zip(chunks, embed_passages(model, inputs), strict=True):
        chunk.embedding = vector
    Chunk.objects.bulk_update(chunks, ["embedding"])


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
        model = locked_active_model()  # a swap of embedding models waits until this commits
        if version.embedded_with != model:
            # The index changed models after this version was embedded (rare: do it again here).
            _embed_chunks(version, list(version.chunks.only("text", "heading_path")), model)
            _set_state(version, State.INDEXING, embedded_with=model)
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
