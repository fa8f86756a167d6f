"""A second, whole stack (`python -m kb.stack`, what ./run execs) in its own var folder and port,
for tests that start, crash and stop it (tests/test_stack.py, tests/test_faults.py)."""

import contextlib
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

from kb.stack.layout import PROJECT_DIR, Layout

ADMIN_PASSWORD = "first-admin-pw-42"


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Stack:
    """`python -m kb.stack` (what ./run execs) with its own KB_VAR_DIR and PORT; `extra_env`
    is added to its environment (settings for one test's needs)."""

    def __init__(self, var: Path, port: int, extra_env: dict[str, str] | None = None):
        self.var, self.port = var, port
        self.engine_port = unused_port()
        self.layout = Layout(var)
        self.log = var.parent / f"{var.name}-output.log"
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        servers = {"DATABASE_URL", "REDIS_URL", "ENGINE_URL", "ENGINE_URLS"}
        inherited = {k: v for k, v in os.environ.items() if k not in servers}
        return dict(
            inherited,
            KB_VAR_DIR=str(self.var),
            PORT=str(self.port),
            KB_ADMIN_PASSWORD=ADMIN_PASSWORD,
            # The small generator the engine tests use: it loads in a second.
            KB_ENGINE_MODEL="smollm2-135m-instruct",
            KB_ENGINE_PORT=str(self.engine_port),
            **self.extra_env,
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
                response = httpx.get(f"{self.url}/healthz", timeout=5)
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

    def manage(self, *args: str, timeout: float = 120) -> str:
        """`./run manage ARGS…` against this stack; its standard output."""
        result = subprocess.run(
            [sys.executable, "-m", "kb.stack", "manage", *args], env=self.env(), cwd=PROJECT_DIR,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

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


@contextlib.contextmanager
def separate_stack(**extra_env: str):
    """A Stack in a fresh var folder (not started); everything it left running is stopped afterwards."""
    var = Path(tempfile.mkdtemp(prefix="kbt-", dir="/tmp"))
    stack = Stack(var, unused_port(), extra_env)
    try:
        yield stack
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(stack.pid("supervisor"), signal.SIGCONT)  # a test may have paused it
        subprocess.run(
            [sys.executable, "-m", "kb.stack", "stop"], env=stack.env(), cwd=PROJECT_DIR, timeout=120
        )
        for pid in stack.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(var, ignore_errors=True)
        stack.log.unlink(missing_ok=True)
