"""PostgreSQL advisory locks that tell a running background job from one whose worker died.

A worker holds its job's session lock while it works on it. The lock goes with the worker's
database connection, so a job whose state says it is running but whose lock is free has lost its
worker, and a second delivery of the same task sees that another worker has it. Each kind of job
has its own namespace: the first key of the two-part lock, the second being the job's id.
"""

import contextlib
import time
from collections.abc import Iterable, Iterator

from django.db import connection, transaction

INGESTION = 4242
ANSWER_BATCH = 4243
# A stalled-job check holds a job's lock for a moment; a worker that meets it tries again.
ATTEMPTS = 5
RETRY_SECONDS = 0.2


@contextlib.contextmanager
def held(namespace: int, job_id: int) -> Iterator[bool]:
    """Hold the job's lock for the block; yields False, holding nothing, when another worker has it."""
    if not _take(namespace, job_id):
        yield False
        return
    try:
        yield True
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [namespace, job_id])


def unheld(namespace: int, job_ids: Iterable[int]) -> list[int]:
    """The ids among `job_ids` whose lock nobody holds. Checked with transaction-level locks,
    released as soon as the check ends."""
    free = []
    with transaction.atomic(), connection.cursor() as cursor:
        for job_id in job_ids:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [namespace, job_id])
            if cursor.fetchone()[0]:
                free.append(job_id)
    return free


def _take(namespace: int, job_id: int) -> bool:
    with connection.cursor() as cursor:
        for _ in range(ATTEMPTS):
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [namespace, job_id])
            if cursor.fetchone()[0]:
                return True
            time.sleep(RETRY_SECONDS)
    return False
