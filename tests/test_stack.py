"""./run as a whole: a second stack in its own var folder is started, crashed, restarted and stopped."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from kb.stack.layout import PROJECT_DIR, Layout
from kb.stack.postgres import LocalPostgres

pytestmark = pytest.mark.slow


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """`python -m kb.stack` (what ./run execs) with its own KB_VAR_DIR and PORT."""

    def __init__(self, var: Path, port: int):
        self.var, self.port = var, port
        self.engine_port = unused_port()
        self.layout = Layout(var)
        self.log = var.parent / f"{var.name}-output.log"
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        inherited = {
            k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "ENGINE_URL"}
        }
        return dict(
            inherited,
            KB_VAR_DIR=str(self.var),
            PORT=str(self.port),
            KB_ADMIN_PASSWORD="first-admin-pw-42",
            # The small generator the engine tests use: it loads in a second.
            KB_ENGINE_MODEL="smollm2-135m-instruct",
            KB_ENGINE_PORT=str(self.engine_port),
        )

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kb.stack"], env=self.env(), cwd=PROJECT_DIR,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log.read_text()

    def pid(self, name: str) -> int:
        return int(self.layout.pid_file(name).read_text())

    def wait_healthy(self, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                response = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"no healthy /healthz within {timeout} s:\n{self.output()}")

    def sql(self, query: str, *params) -> list[tuple]:
        conn = psycopg.connect(host=str(self.layout.pg_socket_dir), dbname="kb", user="kb", autocommit=True)
        with conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def processes(self) -> list[int]:
        """Live processes that belong to this stack (by command line or environment)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            except OSError:
                continue
            if str(self.var).encode() in text:
                found.append(int(entry.name))
        return found


@pytest.fixture
def stack():
    var = Path(tempfile.mkdtemp(prefix="kbt-", dir="/tmp"))
    stack = Stack(var, unused_port())
    yield stack
    subprocess.run([sys.executable, "-m", "kb.stack", "stop"], env=stack.env(), cwd=PROJECT_DIR, timeout=120)
    for pid in stack.processes():
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(var, ignore_errors=True)
    stack.log.unlink(missing_ok=True)


def test_run_recovers_from_crashes_keeps_data_and_stops_cleanly(stack):
    stack.start()
    report = stack.wait_healthy()
    assert report["database"]["pgvector"] and report["worker"]["status"] == "up"
    assert report["engine"]["status"] == "up"
    assert report["engine"]["detail"]["model"] == "smollm2-135m-instruct"
    assert stack.sql("SELECT username FROM auth_user WHERE is_superuser") == [("admin",)]
    stack.sql("INSERT INTO kb_collection (name, description, created_at) VALUES ('Kept', '', now())")

    # The web server and the engine die: the supervisor starts new ones.
    for name in ("web", "engine"):
        pid = stack.pid(name)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while stack.pid(name) == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        stack.wait_healthy()
        assert f"{name} exited" in stack.output()

    # The whole run dies at once, leaving pid files and orphans behind; ./run again recovers.
    for name in ("supervisor", "web", "worker", "engine"):
        os.kill(stack.pid(name), signal.SIGKILL)
    stack.process.wait()
    stack.start()
    stack.wait_healthy()
    assert "left over from an earlier run" in stack.output()
    assert stack.sql("SELECT name FROM kb_collection") == [("Kept",)]
    assert stack.sql("SELECT count(*) FROM auth_user WHERE is_superuser") == [(1,)]

    # A second stack asking for the same port is told so, and starts nothing.
    other = Stack(Path(tempfile.mkdtemp(prefix="kbt-", dir="/tmp")), stack.port)
    result = subprocess.run(
        [sys.executable, "-m", "kb.stack"], env=other.env(), cwd=PROJECT_DIR,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{stack.port}" in result.stdout
    assert not (other.var / "pg" / "data").exists()
    shutil.rmtree(other.var)

    # Ctrl-C stops everything it started.
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=120) == 0
    assert stack.processes() == []
    assert not LocalPostgres(stack.layout).is_running()
    assert not any(stack.layout.pid_dir.glob("*.pid")), list(stack.layout.pid_dir.iterdir())


def test_the_command_that_started_the_servers_stops_them_only_after_the_others_left(stack):
    """Two `./run manage` commands share PostgreSQL and Redis; the first started them and ends first."""

    def manage(seconds: float, log: Path) -> subprocess.Popen:
        code = (
            f"import time; time.sleep({seconds}); from django.db import connection; "
            "from django.core.cache import cache; connection.ensure_connection(); cache.set('k', 1); "
            "print('still served')"
        )
        with open(log, "wb") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "kb.stack", "manage", "shell", "-c", code], env=stack.env(),
                cwd=PROJECT_DIR, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    first_log, second_log = stack.var / "first.log", stack.var / "second.log"
    first = manage(15, first_log)
    deadline = time.monotonic() + 120
    while not (stack.layout.pid_dir / "redis.owner").exists():
        assert time.monotonic() < deadline and first.poll() is None, first_log.read_text()
        time.sleep(0.2)
    second = manage(30, second_log)
    assert first.wait(timeout=180) == 0, first_log.read_text()
    assert "waiting for 1 other ./run command(s)" in first_log.read_text()
    assert second.wait(timeout=180) == 0, second_log.read_text()
    assert "still served" in second_log.read_text()
    assert "still served" in first_log.read_text()
    assert not LocalPostgres(stack.layout).is_running()
    assert not list((stack.layout.pid_dir / "users").glob("*"))
