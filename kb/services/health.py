"""Is every part of the system up? Used by GET /healthz."""

import redis
from django.conf import settings
from django.db import connection

from inference.client import EngineUnavailable, engine_health
from kb.celery import app as celery_app

WORKER_PING_TIMEOUT = 1.0
DEEP_CHECK_TIMEOUT = 5.0


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        )
        server, pgvector = cursor.fetchone()
    if pgvector is None:
        return {
            "status": "down",
            "server": server,
            "error": "the pgvector extension is not installed",
        }
    return {"status": "up", "server": server, "pgvector": pgvector}


def check_redis() -> dict:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        return {"status": "up", "version": client.info("server")["redis_version"]}
    finally:
        client.close()


def check_worker(*, deep: bool = False) -> dict:
    """Which workers answer and which queues they consume: a queue without a worker holds its jobs
    for good. With deep=True also a task round trip that reaches the database."""
    replies = celery_app.control.inspect(timeout=WORKER_PING_TIMEOUT).active_queues() or {}
    if not replies:
        return {"status": "down", "error": "no Celery worker answered a ping"}
    consumed = {queue["name"] for queues in replies.values() for queue in queues}
    unconsumed = sorted({queue.name for queue in settings.CELERY_TASK_QUEUES} - consumed)
    if unconsumed:
        return {
            "status": "down",
            "workers": sorted(replies),
            "unconsumed_queues": unconsumed,
            "error": f"no worker consumes the queues {', '.join(unconsumed)}",
        }
    result = {"status": "up", "workers": sorted(replies)}
    if deep:
        from kb.tasks import database_status

        result["task"] = database_status.delay().get(timeout=DEEP_CHECK_TIMEOUT)
    return result


def check_engine() -> dict:
    """Each replica in ENGINE_URLS; down when none answers, degraded when some do not (answers
    still come, from the others)."""
    if not settings.ENGINE_URLS:
        # Nothing to check until an engine is configured or started by ./run.
        return {"status": "not_configured"}
    replicas = []
    for url in settings.ENGINE_URLS:
        try:
            replicas.append({"url": url, "status": "up", "detail": engine_health(url)})
        except EngineUnavailable as error:
            replicas.append({"url": url, "status": "down", "error": str(error)})
    up = sum(replica["status"] == "up" for replica in replicas)
    status = "up" if up == len(replicas) else "degraded" if up else "down"
    return {"status": status, "replicas": replicas}


def _safely(check, **kwargs) -> dict:
    try:
        return check(**kwargs)
    except Exception as error:  # any failure of a dependency means "down", with the reason
        return {"status": "down", "error": f"{type(error).__name__}: {error}"[:300]}


def system_health(*, deep: bool = False) -> tuple[bool, dict]:
    """(healthy, report). Healthy when no component is down."""
    report = {
        "database": _safely(check_database),
        "redis": _safely(check_redis),
        "worker": _safely(check_worker, deep=deep),
        "engine": _safely(check_engine),
    }
    down = sorted(name for name, part in report.items() if part["status"] == "down")
    return not down, {"status": "ok" if not down else "down", "down": down, **report}
