"""Scale-out on one machine: the processes each container of deploy/ runs (`./run web`, `./run
worker`, `./run engine`), two workers and two engines, against one PostgreSQL and one Redis.

A general worker and an embedding-only worker (KB_WORKER_QUEUES=embed) ingest the whole dev corpus,
uploaded concurrently; the web server balances questions over both engines (ENGINE_URLS)."""

import contextlib
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from kb.celery import app as celery_app
from kb.models import Collection
from kb.services.tokens import create_token
from kb.stack.layout import PROJECT_DIR
from tests.conftest import (
    LENIENT_FACTCHECK,
    SMALL_ANSWER_ENVIRONMENT,
    TEST_CONTEXT_TOKENS,
    child_environment,
    database_url,
    die_with_parent,
    free_port,
    serve,
    wait_for_worker,
)
from tests.rest import DOCS, Api, assert_indexed_exactly_once, expected_chunks

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RUN = str(PROJECT_DIR / "run")
QUESTIONS = [
    "What were the astronauts wearing during the dual mission AS-278?",
    "What is the name of another algorithm useful for conveniently testing the primality of large numbers?",
    "Which virus infections are found in exacerbations of chronic obstructive pulmonary disease?",
    "Who won Super Bowl 50?",
    "What is the capital of Victoria?",
    "Where did the Huguenots settle?",
]


def sql(query: str, *params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def app_environment(**extra: str) -> dict[str, str]:
    """What a container of deploy/ gets: the shared servers, and settings sized for SmolLM2."""
    environment = {
        "DATABASE_URL": database_url(connection.settings_dict),
        **SMALL_ANSWER_ENVIRONMENT,
        **LENIENT_FACTCHECK,
    }
    return child_environment(**(environment | extra))


@contextlib.contextmanager
def worker(name: str, queues: str):
    """`./run worker` consuming `queues`, one process."""
    env = app_environment(KB_WORKER_NAME=name, KB_WORKER_QUEUES=queues, KB_WORKER_CONCURRENCY="1")
    process = subprocess.Popen([RUN, "worker"], env=env, preexec_fn=die_with_parent)
    try:
        wait_for_worker(f"{name}@{socket.gethostname()}", timeout=120)
        yield f"{name}@{socket.gethostname()}"
    finally:
        process.terminate()
        process.wait(timeout=60)


@contextlib.contextmanager
def engine(log_dir):
    port = free_port()
    env = app_environment(
        KB_ENGINE_PORT=str(port),
        KB_ENGINE_CONTEXT_LENGTH=str(TEST_CONTEXT_TOKENS),
        KB_ENGINE_MAX_BATCH="2",
    )
    with serve([RUN, "engine"], f"http://127.0.0.1:{port}", "/health", log_dir, env=env, timeout=120) as url:
        yield url


@contextlib.contextmanager
def web(engines: list[str], log_dir):
    port = free_port()
    env = app_environment(PORT=str(port), ENGINE_URLS=",".join(engines))
    with serve([RUN, "web"], f"http://127.0.0.1:{port}", "/healthz", log_dir, env=env, timeout=120) as url:
        yield url


def requests_finished(engine_url: str) -> float:
    lines = httpx.get(f"{engine_url}/metrics", timeout=5).text.splitlines()
    finished = [line for line in lines if line.startswith("kb_engine_requests_finished_total")]
    return sum(float(line.split()[-1]) for line in finished)


def tasks_run(hostname: str) -> dict[str, int]:
    stats = celery_app.control.inspect(destination=[hostname], timeout=5).stats() or {}
    return stats.get(hostname, {}).get("total", {})


def test_two_workers_and_two_engines_share_one_database_and_broker(celery_worker, smollm2_builds, tmp_path):
    celery_worker.stop()  # only the deployment's workers take jobs
    Collection.objects.create(name="Dev corpus")
    admin = get_user_model().objects.create_superuser(username="operator", password="operator-pw-42")
    names = sorted(path.name for path in DOCS.glob("*.md"))
    expected = expected_chunks(names)
    with contextlib.ExitStack() as running:
        general = running.enter_context(worker("general", "parse,embed,index,batch,maintenance"))
        embedder = running.enter_context(worker("embedder", "embed"))
        logs = {name: tmp_path / name for name in ("engine-1", "engine-2", "web")}
        for folder in logs.values():
            folder.mkdir()
        engines = [running.enter_context(engine(logs[name])) for name in ("engine-1", "engine-2")]
        web_url = running.enter_context(web(engines, logs["web"]))
        health = httpx.get(f"{web_url}/healthz", timeout=30).json()
        assert health["status"] == "ok", health
        assert [replica["url"] for replica in health["engine"]["replicas"]] == engines
        assert {general, embedder} <= set(health["worker"]["workers"])

        api = Api(web_url, create_token(user=admin, name="scale-out").key)
        with ThreadPoolExecutor(max_workers=6) as uploads:
            responses = list(uploads.map(lambda name: api.upload("Dev corpus", name), names))
        assert all(response.status_code == 202 for response in responses), [r.text for r in responses]
        api.wait_until_jobs_ended("Dev corpus", len(names), timeout=900)
        assert_indexed_exactly_once(sql, api, "Dev corpus", expected)
        # The embedding worker took embedding jobs only; parsing and indexing went to the other.
        embedded = tasks_run(embedder)
        assert set(embedded) == {"kb.tasks.embed_version"} and embedded["kb.tasks.embed_version"] > 0
        general_tasks = tasks_run(general)
        assert general_tasks["kb.tasks.parse_version"] >= len(names)
        assert general_tasks["kb.tasks.index_version"] >= len(names)

        before = [requests_finished(url) for url in engines]
        with ThreadPoolExecutor(max_workers=3) as asks:
            answers = list(asks.map(lambda question: api.ask(question, "Dev corpus"), QUESTIONS))
        assert all(response.status_code == 200 for response in answers), [r.text for r in answers]
        outcomes = [response.json()["answer"]["outcome"] for response in answers]
        assert "engine_unavailable" not in outcomes, outcomes
        served = [requests_finished(url) - done for url, done in zip(engines, before, strict=True)]
        # Both engines answered, each question at most once (a question with nothing to cite from
        # reaches no engine).
        assert all(count > 0 for count in served) and sum(served) <= len(QUESTIONS), served
