"""Batch questions: many questions submitted at once, answered in the background by the worker.

Every question is checked when the batch is submitted, so a bad one is refused before any work
starts; answering then skips items already answered, so a worker killed mid-batch resumes where
it stopped. The worker holds the batch's lock (job_locks) while it answers: the workers' stalled-
job check queues again a running batch nobody holds and a queued one whose message was lost.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from kb.models import AskBatch, AskBatchItem
from kb.services import job_locks, task_queues
from kb.services.answers import ask, normalise_question
from kb.services.search import search_scopes
from retrieval.search import InvalidQuery

logger = logging.getLogger(__name__)

MAX_QUESTIONS = 100
State = AskBatch.State


def submit_batch(*, user, questions: list[str], collections: list[str] | None = None) -> AskBatch:
    """Queue `questions` for `user` (in the named collections, or all they may read)."""
    if not 1 <= len(questions) <= MAX_QUESTIONS:
        raise InvalidQuery(f"a batch holds 1 to {MAX_QUESTIONS} questions")
    for number, question in enumerate(questions, start=1):
        try:
            normalise_question(question)
        except InvalidQuery as error:
            raise InvalidQuery(f"question {number}: {error}") from None
    search_scopes(user, collections)  # raises UnknownCollection for one the user may not read
    with transaction.atomic():
        batch = AskBatch.objects.create(user=user, collections=collections, total=len(questions))
        AskBatchItem.objects.bulk_create(
            AskBatchItem(batch=batch, ordinal=ordinal, text=text) for ordinal, text in enumerate(questions)
        )
        transaction.on_commit(lambda: _queue(batch.pk))
    return batch


def _queue(batch_id: int) -> None:
    """Send the batch to the workers; while the broker is unreachable it stays queued in the
    database and the stalled-job check sends it after KB_QUEUED_JOB_TIMEOUT."""
    from kb.tasks import answer_batch  # the tasks module imports the services

    try:
        answer_batch.delay(batch_id)
    except OperationalError as error:
        logger.warning("batch %s not sent, the task queue is unreachable: %s", batch_id, error)


def answer_batch(batch_id: int) -> None:
    """Answer the batch's unanswered items in order, counting progress after each. A batch
    another worker is answering (a second delivery of its task) is left to that worker."""
    with job_locks.held(job_locks.ANSWER_BATCH, batch_id) as locked:
        if not locked:
            logger.info("batch %s is being answered by another worker", batch_id)
            return
        batch = AskBatch.objects.select_related("user").filter(pk=batch_id).first()
        if batch is None or batch.state == State.DONE:
            return  # deleted meanwhile (its user was), or finished by an earlier delivery
        _answer(batch)


def _answer(batch: AskBatch) -> None:
    AskBatch.objects.filter(pk=batch.pk).update(state=State.RUNNING, updated_at=timezone.now())
    for item in batch.items.filter(question=None, error=""):
        try:
            item.question = ask(user=batch.user, question=item.text, collections=batch.collections)
        except InvalidQuery as error:  # e.g. the user lost access to a collection meanwhile
            item.error = str(error)
        item.save(update_fields=["question", "error"])
        AskBatch.objects.filter(pk=batch.pk).update(done=_finished(batch), updated_at=timezone.now())
    AskBatch.objects.filter(pk=batch.pk).update(
        state=State.DONE, done=_finished(batch), updated_at=timezone.now()
    )


def stalled_batches() -> list[int]:
    """Batches no worker holds although one should: running ones (their worker died) and queued
    ones waiting longer than KB_QUEUED_JOB_TIMEOUT while the batch queue is empty (their message was
    lost; see task_queues)."""
    queued_before = timezone.now() - timedelta(seconds=settings.KB_QUEUED_JOB_TIMEOUT)
    stalled = Q(state=State.RUNNING)
    if task_queues.waiting_messages("batch") == 0:
        stalled |= Q(state=State.QUEUED, updated_at__lt=queued_before)
    candidates = AskBatch.objects.filter(stalled).order_by("pk").values_list("pk", flat=True)
    return job_locks.unheld(job_locks.ANSWER_BATCH, list(candidates))


def requeue_stalled_batches() -> list[int]:
    """Queue every stalled batch again; it goes on after the items already answered."""
    stalled = stalled_batches()
    if stalled:
        logger.warning("re-queueing question batches whose worker died: %s", stalled)
        AskBatch.objects.filter(pk__in=stalled).update(state=State.QUEUED, updated_at=timezone.now())
    for pk in stalled:
        _queue(pk)
    return stalled


def _finished(batch: AskBatch) -> int:
    return batch.items.exclude(question=None, error="").count()
