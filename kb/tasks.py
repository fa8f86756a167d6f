"""Celery tasks. Each one is a thin wrapper around a service function."""

import logging
import os
import socket
import threading
import time

from celery import shared_task
from celery.signals import worker_process_init, worker_ready
from django.conf import settings
from django.db import DatabaseError, connection

from kb import warm_up
from kb.services import batches, ingestion

logger = logging.getLogger(__name__)


# Jobs whose state lives in the database: retried while the database is away, and no result
# stored (nobody reads it, and storing it would hold up queueing while Redis is down).
DATABASE_JOB = dict(
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=10,
)


# The time limits travel in each task message, taken from the process that queues the job
# (web server, command, the worker of the stage before); every process of a deployment reads
# the same KB_INGEST_TIME_LIMIT. It bounds each stage.
INGESTION_STAGE = dict(
    DATABASE_JOB,
    soft_time_limit=settings.KB_INGEST_TIME_LIMIT,
    time_limit=settings.KB_INGEST_TIME_LIMIT + 60,
)


# Each stage is routed to the queue of its name (CELERY_TASK_ROUTES), so that embedding workers,
# the ones that need the cores, can be scaled alone.
@shared_task(**INGESTION_STAGE)
def parse_version(version_id: int) -> None:
    ingestion.advance(version_id, ingestion.Stage.PARSE)


@shared_task(**INGESTION_STAGE)
def embed_version(version_id: int) -> None:
    ingestion.advance(version_id, ingestion.Stage.EMBED)


@shared_task(**INGESTION_STAGE)
def index_version(version_id: int) -> None:
    ingestion.advance(version_id, ingestion.Stage.INDEX)


# Each question stores its own answer; a retried or resumed batch skips the answered ones.
@shared_task(**DATABASE_JOB)
def answer_batch(batch_id: int) -> None:
    batches.answer_batch(batch_id)


@worker_process_init.connect
def prepare_worker_process(**kwargs) -> None:
    """Each pool process embeds with its share of the cores: N processes with all cores each
    would oversubscribe the CPU, while one process parsing and another embedding overlap well.
    The ingestion models are loaded before the first task."""
    import torch
    from threadpoolctl import threadpool_limits

    concurrency = int(os.environ.get("KB_WORKER_CONCURRENCY", "1"))
    threads = max(1, (os.cpu_count() or 1) // concurrency)
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")  # numpy's BLAS, which spaCy multiplies with
    # The same variable chooses the worker's queues (kb.stack); unset, it consumes them all.
    every_queue = ",".join(queue.name for queue in settings.CELERY_TASK_QUEUES)
    queues = os.environ.get("KB_WORKER_QUEUES") or every_queue
    warm_up.load_ingestion_models(set(queues.split(",")))


@worker_ready.connect
def watch_stalled_jobs(**kwargs) -> None:
    """A starting worker picks up the jobs of workers that died mid-way, and keeps looking."""
    _requeue_stalled_jobs()
    threading.Thread(target=_watch_stalled_jobs, name="stalled-jobs", daemon=True).start()


def _watch_stalled_jobs() -> None:
    while True:
        time.sleep(settings.KB_STALLED_CHECK_SECONDS)
        try:
            _requeue_stalled_jobs()
        except Exception:  # the database or the broker is away: look again next time
            logger.warning("could not check for stalled jobs", exc_info=True)
        finally:
            connection.close()


def _requeue_stalled_jobs() -> None:
    ingestion.requeue_stalled_versions()
    batches.requeue_stalled_batches()


@shared_task
def database_status() -> dict:
    """Report which worker ran this and what database it reaches (the deep health check)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database(), current_setting('server_version')")
        database, server = cursor.fetchone()
    return {"worker_host": socket.gethostname(), "database": database, "server": server}
