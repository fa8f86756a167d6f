"""Fixtures for tests against the real stack: PostgreSQL + pgvector, Redis, a Celery worker.

./run test brings up PostgreSQL and Redis (Redis database 15, so a running application's
worker never sees test tasks); pytest-django creates the test database on that server.
"""

import contextlib
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve(command: list[str], url: str, ready_path: str, log_dir, env=None, timeout: float = 60):
    """Start a server process, wait until `ready_path` answers 200, yield its URL, stop it.
    Its output goes to a file, not a pipe: nobody reads it while tests run, and a full pipe would
    block the server; the file is shown when the server does not start."""
    log_path = log_dir / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url + ready_path, timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    process.wait()
                    pytest.fail(f"{command[2]} did not start:\n{log_path.read_text()}")
                time.sleep(0.2)
        yield url
        process.terminate()
        process.wait(timeout=20)


def child_environment(**extra: str) -> dict[str, str]:
    """The environment for a process the tests start: this one's, without what only the browser
    tests set for themselves (tests/web/conftest.py)."""
    env = {name: value for name, value in os.environ.items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return env | extra


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

    def __init__(self, hostname: str, pool: str = "solo", queues: str = "", **env: str):
        """`queues`: the ones it consumes, comma-separated (all when empty)."""
        self.hostname = hostname
        self.pool = pool
        self.queues = queues
        self.env = child_environment(DATABASE_URL=database_url(connection.settings_dict), **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "kb", "worker", "--pool", self.pool, "--concurrency", "1"]
            + ["--hostname", self.hostname, "--loglevel", "WARNING", "--without-mingle", "--without-gossip"]
            + (["--queues", self.queues] if self.queues else []),
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


def purge_task_queues() -> None:
    """Drop every message waiting in the test broker's queues."""
    from django.conf import settings

    with celery_app.connection_for_write() as connection:
        for queue in settings.CELERY_TASK_QUEUES:
            connection.default_channel.queue_purge(queue.name)


@pytest.fixture
def idle_queues(celery_worker):
    """No worker running and no message waiting, so a test alone decides what is in the queues;
    it empties them again afterwards (the session's worker starts again after the test)."""
    celery_worker.stop()
    purge_task_queues()
    yield
    purge_task_queues()


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
def fresh_cache(request):
    """No cached search results or answers from earlier tests, and a new sensitive-term version:
    their database rows were rolled back without the commit that would have invalidated them, and
    ids are reused from test to test. No rate-limit counts or failed sign-ins of earlier tests either."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    from django.core.cache import cache

    from kb.services.sensitive_terms import VERSION_KEY
    from retrieval import cache as retrieval_cache

    retrieval_cache.clear()
    cache.delete(VERSION_KEY)
    client = cache._cache.get_client(write=True)
    for pattern in ("rate:*", "sign-in:*"):
        if keys := list(client.scan_iter(match=cache.make_key(pattern))):
            client.delete(*keys)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser(username="root", password="s3cret-pass-word")


# --- the engine: SmolLM2-135M builds (made on first use) and a running service -----------------
# The builds go to the shared model cache ($KB_MODELS_DIR or ~/.cache/kb/models), so only the first run
# on a machine pays for them (about a minute on two cores); later runs find them and skip the build.

# Small enough that the tests' caches stay small, large enough for every prompt they use.
TEST_CONTEXT_TOKENS = 512


@pytest.fixture(scope="session")
def smollm2_builds():
    return build_generator(SMOLLM2_135M, root=models_dir())


@pytest.fixture(scope="session")
def engine_url(smollm2_builds, tmp_path_factory):
    """A real `python -m inference.serve` on a free port with the SmolLM2 INT8 build, for HTTP tests.

    Two sequences at a time and one more waiting, so that tests can fill the engine with three streams.
    """
    port = free_port()
    command = [sys.executable, "-m", "inference.serve", "--model", SMOLLM2_135M.name, "--port", str(port)]
    command += ["--max-batch", "2", "--max-queue", "1", "--context-length", str(TEST_CONTEXT_TOKENS)]
    with serve(command, f"http://127.0.0.1:{port}", "/health", tmp_path_factory.mktemp("engine")) as url:
        yield url


# Answering settings that fit the test engine's 512-token context (also passed to a test web server).
SMALL_ANSWER_SETTINGS = {
    "KB_ENGINE_MODEL": "smollm2-135m-instruct",
    "KB_REWRITE_MODEL": "smollm2-135m-instruct",
    "KB_ANSWER_SOURCES": 2,
    "KB_ANSWER_SOURCE_CHARS": [300],
    "KB_ANSWER_MAX_TOKENS": 48,
    "KB_SENSITIVE_TERMS_REFRESH_SECONDS": 0,
}
# The same, as a child process reads them from its environment.
SMALL_ANSWER_ENVIRONMENT = {
    name: ",".join(map(str, value)) if isinstance(value, list) else str(value)
    for name, value in SMALL_ANSWER_SETTINGS.items()
}


@pytest.fixture
def engine(settings, engine_url):
    """The test engine, with answering settings sized for it."""
    settings.ENGINE_URLS = [engine_url]
    for name, value in SMALL_ANSWER_SETTINGS.items():
        setattr(settings, name, value)
    return engine_url


# --- the web server: uvicorn on the test database, as ./run starts it ----------------------------
# It is a separate process, so tests that use it commit their data (transactional_db).

# Whatever SmolLM2 writes about a passage is backed by it, so pages always have citations to open
# (the fact-check itself is tested in tests/answering and tests/factcheck).
LENIENT_FACTCHECK = {"KB_FACTCHECK_THRESHOLD": "0.01"}


@pytest.fixture(scope="session")
def web_server(django_db_setup, django_db_blocker, engine_url, tmp_path_factory):
    """The application under uvicorn; yields its base URL."""
    env = child_environment(
        DATABASE_URL=database_url(connection.settings_dict),
        ENGINE_URLS=engine_url,
        **SMALL_ANSWER_ENVIRONMENT,
        **LENIENT_FACTCHECK,
        # Pooled as ./run serves it, with a pool small enough to show a request that holds on to
        # its connection (tests/api/test_api_live.py).
        KB_DB_POOL_SIZE="2",
    )
    # The pages use hashed static file names, as in production, so collect them as ./run does.
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], env=env, check=True)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "kb.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with serve(
        command, f"http://127.0.0.1:{port}", "/accounts/login/", tmp_path_factory.mktemp("web"), env=env
    ) as url:
        yield url
