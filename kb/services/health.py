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
    """Celery ping; with deep=True also a task round trip that reaches the database."""
    replies = celery_app.control.ping(timeout=WORKER_PING_TIMEOUT)
    workers = sorted(name for reply in replies for name in reply)
    if not workers:
        return {"status": "down", "error": "no Celery worker answered a ping"}
    result = {"status": "up", "workers": workers}
    if deep:
        from kb.tasks import database_status

        result["task"] = database_status.delay().get(timeout=DEEP_CHECK_TIMEOUT)
    return result


def check_engine() -> dict:
    if not settings.ENGINE_URL:
        # Nothing to check until an engine is configured or started by ./run.
        return {"status": "not_configured"}
    try:
        return {
            "status": "up",
            "url": settings.ENGINE_URL,
            "detail": engine_health(settings.ENGINE_URL),
        }
    except EngineUnavailable as error:
        return {"status": "down", "url": settings.ENGINE_URL, "error": str(error)}


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
