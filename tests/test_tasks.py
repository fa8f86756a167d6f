"""Celery tasks executed by a real worker process over the real Redis broker."""

import pytest
from django.conf import settings

from kb.celery import app as celery_app
from kb.tasks import answer_batch, database_status, embed_version, index_version, parse_version


@pytest.mark.django_db(transaction=True)
def test_task_runs_on_a_real_worker_against_the_test_database(celery_worker, settings):
    result = database_status.delay().get(timeout=60)
    assert result["database"] == settings.DATABASES["default"]["NAME"]
    assert result["server"].startswith("18")


def purge_queues() -> None:
    with celery_app.connection_for_write() as connection:
        for queue in settings.CELERY_TASK_QUEUES:
            connection.default_channel.queue_purge(queue.name)


def waiting_messages() -> dict[str, int]:
    with celery_app.connection_for_read() as connection:
        channel = connection.default_channel
        return {
            queue.name: channel.queue_declare(queue=queue.name, passive=True).message_count
            for queue in settings.CELERY_TASK_QUEUES
        }


@pytest.mark.django_db(transaction=True)
def test_each_task_lands_on_its_own_queue_only(celery_worker):
    celery_worker.stop()  # the messages stay in the broker to be counted
    purge_queues()
    sent = {"parse": parse_version, "embed": embed_version, "index": index_version, "batch": answer_batch}
    for number, task in enumerate(sent.values(), start=1):
        for _ in range(number):
            task.delay(0)
    database_status.delay()
    try:
        assert waiting_messages() == {"parse": 1, "embed": 2, "index": 3, "batch": 4, "maintenance": 1}
    finally:
        purge_queues()
