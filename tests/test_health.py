"""GET /healthz: 200 when every part is up, 503 naming what is down."""

import os
import signal
import socket

import pytest
from django.db import connection

from tests.conftest import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthy_stack_reports_every_part(client, celery_worker):
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    report = response.json()
    assert report["status"] == "ok" and report["down"] == []
    assert report["database"]["server"].startswith("18")
    assert report["database"]["pgvector"]
    assert report["redis"]["status"] == "up"
    assert any(name.startswith("test-") for name in report["worker"]["workers"])
    assert report["engine"]["status"] == "not_configured"


def test_deep_check_sends_a_task_through_a_worker(client, celery_worker, settings):
    response = client.get("/healthz?deep=1")
    assert response.status_code == 200, response.json()
    assert response.json()["worker"]["task"]["database"] == settings.DATABASES["default"]["NAME"]


def test_redis_down_is_named(client, celery_worker, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/no-redis-here.sock"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["redis"]
    assert response.json()["redis"]["status"] == "down"


def test_hung_worker_is_reported_down(client, celery_worker):
    os.kill(celery_worker.process.pid, signal.SIGSTOP)
    try:
        response = client.get("/healthz")
    finally:
        os.kill(celery_worker.process.pid, signal.SIGCONT)
    assert response.status_code == 503
    assert "worker" in response.json()["down"]


def test_unreachable_engine_is_named(client, celery_worker, settings):
    settings.ENGINE_URLS = [f"http://127.0.0.1:{unused_port()}"]
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["down"] == ["engine"]
    assert "unreachable" in response.json()["engine"]["replicas"][0]["error"]


def test_one_engine_replica_down_of_two_is_degraded_not_down(client, celery_worker, settings, engine_url):
    dead = f"http://127.0.0.1:{unused_port()}"
    settings.ENGINE_URLS = [engine_url, dead]
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    engine = response.json()["engine"]
    assert engine["status"] == "degraded"
    assert [(replica["url"], replica["status"]) for replica in engine["replicas"]] == [
        (engine_url, "up"),
        (dead, "down"),
    ]


def test_a_queue_no_worker_consumes_is_named(client, celery_worker):
    """A worker that consumes only some queues (a deployment's embedding worker) is not enough."""
    celery_worker.stop()
    worker = WorkerProcess(f"embedder-{os.getpid()}@localhost", queues="embed")
    worker.start()
    try:
        response = client.get("/healthz")
    finally:
        worker.stop()
    assert response.status_code == 503
    report = response.json()["worker"]
    assert report["status"] == "down"
    assert report["unconsumed_queues"] == ["batch", "index", "maintenance", "parse"]


def test_database_down_is_named(client, celery_worker, tmp_path):
    original_host = connection.settings_dict["HOST"]
    connection.close()
    connection.settings_dict["HOST"] = str(tmp_path / "no-server-here")
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["HOST"] = original_host
    assert response.status_code == 503
    assert response.json()["down"] == ["database"]
    assert response.json()["database"]["status"] == "down"
