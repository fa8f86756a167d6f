"""Batch questions: many questions submitted at once, answered in the background by the worker.

Every question is checked when the batch is submitted, so a bad one is refused before any work
starts; answering then skips items already answered, so a worker killed mid-batch resumes where
it stopped.
"""

from django.db import transaction

from kb.models import AskBatch, AskBatchItem
from kb.services.answers import ask, normalise_question
from kb.services.search import search_scopes
from retrieval.search import InvalidQuery

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
    from kb.tasks import answer_batch  # the tasks module imports the services

    answer_batch.delay(batch_id)


def answer_batch(batch_id: int) -> None:
    """Answer the batch's unanswered items in order, counting progress after each."""
    batch = AskBatch.objects.select_related("user").get(pk=batch_id)
    if batch.state == State.DONE:
        return
    AskBatch.objects.filter(pk=batch.pk).update(state=State.RUNNING)
    for item in batch.items.filter(question=None, error=""):
        try:
            item.question = ask(user=batch.user, question=item.text, collections=batch.collections)
        except InvalidQuery as error:  # e.g. the user lost access to a collection meanwhile
            item.error = str(error)
        item.save(update_fields=["question", "error"])
        AskBatch.objects.filter(pk=batch.pk).update(done=_finished(batch))
    AskBatch.objects.filter(pk=batch.pk).update(state=State.DONE, done=_finished(batch))


def _finished(batch: AskBatch) -> int:
    return batch.items.exclude(question=None, error="").count()
