"""Fixtures for tests against the real stack: PostgreSQL + pgvector, Redis, a Celery worker.

./run test brings up PostgreSQL and Redis (Redis database 15, so a running application's
worker never sees test tasks); pytest-django creates the test database on that server.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import quote

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from inference.build import build_generator
from inference.catalog import SMOLLM2_135M
from inference.model_store import models_dir
from kb.celery import app as celery_app

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Run in a child before exec: the kernel kills it when the test process dies, so an
    interrupted test run leaves no worker holding the test database open."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the test database, so another process (the worker) uses it too."""
    host = quote(settings_dict["HOST"] or "", safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    password = f":{quote(settings_dict['PASSWORD'], safe='')}" if settings_dict.get("PASSWORD") else ""
    return f"postgres://{settings_dict['USER']}{password}@{host}{port}/{settings_dict['NAME']}"


def wait_for_worker(hostname: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = celery_app.control.ping(timeout=0.5)
        if any(hostname in reply for reply in replies):
            return
    raise RuntimeError(f"Celery worker {hostname} did not answer within {timeout} s")


class WorkerProcess:
    """A real Celery worker process consuming the test broker and writing to the test database."""

    def __init__(self, hostname: str, pool: str = "solo", **env: str):
        self.hostname = hostname
        self.pool = pool
        self.env = dict(os.environ, DATABASE_URL=database_url(connection.settings_dict), **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "kb", "worker", "--pool", self.pool, "--concurrency", "1"]
            + ["--hostname", self.hostname, "--loglevel", "WARNING", "--without-mingle", "--without-gossip"],
            env=self.env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        wait_for_worker(self.hostname)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Warm shutdown: the current task finishes first."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL, as a crash or the kernel's OOM killer would."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture(scope="session")
def test_worker(django_db_setup, django_db_blocker):
    worker = WorkerProcess(f"test-{os.getpid()}@localhost")
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(test_worker):
    """The session's worker, running (a test may stop it; it is started again afterwards)."""
    if not test_worker.running:
        test_worker.start()
    yield test_worker
    if not test_worker.running:
        test_worker.start()


@pytest.fixture(autouse=True)
def unhashed_static_files(request):
    """Pages render without `collectstatic`, which ./run runs for the application but not for tests.

    Skipped where pytest runs without its Django plugin (`-p no:django`, for the plain-Python
    tests of inference/ and kb/ingestion/)."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    settings = request.getfixturevalue("settings")
    settings.STATIC_ROOT = settings.BASE_DIR / "static"  # exists in every checkout, unlike var/static
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def fresh_search_cache(request):
    """No cached search results or answers from earlier tests, and a new sensitive-term version:
    their database rows were rolled back without the commit that would have invalidated them, and
    ids are reused from test to test."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from django.core.cache import cache

    from kb.services.sensitive_terms import VERSION_KEY
    from retrieval import cache as retrieval_cache

    retrieval_cache.clear()
    cache.delete(VERSION_KEY)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser(username="root", password="s3cret-pass-word")


# --- the engine: SmolLM2-135M builds (made on first use) and a running service -----------------
# The builds go to the shared model cache ($KB_MODELS_DIR or ~/.cache/kb/models), so only the first run
# on a machine pays for them (about a minute on two cores); later runs find them and skip the build.

# Small enough that the tests' caches stay small, large enough for every prompt they use.
TEST_CONTEXT_TOKENS = 512
# Loading SmolLM2 takes 2-3 s; the margin is for a loaded CI machine.
SERVICE_START_SECONDS = 60


@pytest.fixture(scope="session")
def smollm2_builds():
    return build_generator(SMOLLM2_135M, root=models_dir())


@pytest.fixture(scope="session")
def engine_url(smollm2_builds, tmp_path_factory):
    """A real `python -m inference.serve` on a free port with the SmolLM2 INT8 build, for HTTP tests.

    Two sequences at a time and one more waiting, so that tests can fill the engine with three streams.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "inference.serve", "--model", SMOLLM2_135M.name, "--port", str(port)]
    command += ["--max-batch", "2", "--max-queue", "1", "--context-length", str(TEST_CONTEXT_TOKENS)]
    # A file, not a pipe: nobody reads the log while tests run, and a full pipe would block the server.
    log_path = tmp_path_factory.mktemp("engine") / "serve.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while True:
        try:
            httpx.get(f"{url}/health", timeout=1.0).raise_for_status()
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                pytest.fail(f"the engine did not start:\n{log_path.read_text()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log.close()
