"""Celery tasks executed by a real worker process over the real Redis broker."""

import pytest
from django.conf import settings

from kb import warm_up
from kb.ingestion.sentences import english_pipeline
from kb.services import task_queues
from kb.tasks import answer_batch, database_status, embed_version, index_version, parse_version
from retrieval import reembedding
from retrieval.embedding import load_encoder, load_tokenizer
from retrieval.models import EmbeddingState


@pytest.mark.django_db(transaction=True)
def test_task_runs_on_a_real_worker_against_the_test_database(celery_worker, settings):
    result = database_status.delay().get(timeout=60)
    assert result["database"] == settings.DATABASES["default"]["NAME"]
    assert result["server"].startswith("18")


def waiting_messages() -> dict[str, int]:
    return {queue.name: task_queues.waiting_messages(queue.name) for queue in settings.CELERY_TASK_QUEUES}


@pytest.mark.django_db(transaction=True)
def test_each_task_lands_on_its_own_queue_only(idle_queues):
    sent = {"parse": parse_version, "embed": embed_version, "index": index_version, "batch": answer_batch}
    for number, task in enumerate(sent.values(), start=1):
        for _ in range(number):
            task.delay(0)
    database_status.delay()
    assert waiting_messages() == {"parse": 1, "embed": 2, "index": 3, "batch": 4, "maintenance": 1}


@pytest.mark.django_db
def test_a_worker_process_loads_the_models_of_its_queues_only():
    for loader in (english_pipeline, load_tokenizer, load_encoder):
        loader.cache_clear()
    warm_up.load_ingestion_models({"parse", "batch"})
    assert english_pipeline.cache_info().currsize == 1
    assert load_tokenizer.cache_info().currsize == 1
    assert load_encoder.cache_info().currsize == 0
    # The index's model, which a re-embedding may have made another than KB_EMBEDDING_MODEL.
    reembedding.state()
    EmbeddingState.objects.update(model="multilingual-e5-small")
    warm_up.load_ingestion_models({"embed"})
    assert load_encoder.cache_info().currsize == 1
    hits = load_encoder.cache_info().hits
    load_encoder("multilingual-e5-small")
    assert load_encoder.cache_info().hits == hits + 1
