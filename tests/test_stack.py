"""./run as a whole: a second stack in its own var folder is started, crashed, restarted and stopped."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kb.stack.layout import PROJECT_DIR
from kb.stack.postgres import LocalPostgres
from tests.stacks import Stack, separate_stack

pytestmark = pytest.mark.slow


@pytest.fixture
def stack():
    with separate_stack(KB_ENGINE_MAX_BATCH="3", KB_ENGINE_MAX_QUEUE="5") as stack:
        yield stack


def test_run_recovers_from_crashes_keeps_data_and_stops_cleanly(stack):
    stack.start()
    report = stack.wait_healthy()
    assert report["database"]["pgvector"] and report["worker"]["status"] == "up"
    assert report["engine"]["status"] == "up"
    (engine,) = report["engine"]["replicas"]
    assert engine["detail"]["model"] == "smollm2-135m-instruct"
    # The engine's scheduler settings reach it from the environment.
    assert (engine["detail"]["max_batch"], engine["detail"]["max_queue"]) == (3, 5)
    assert stack.sql("SELECT username FROM auth_user WHERE is_superuser") == [("admin",)]
    # The long jobs give way to the web server for the CPU: the engine and workers at nice 10, each
    # in its own session's scheduling group (autogroup) of nice 10 too.
    for name, nice in (("web", 0), ("engine", 10), ("worker", 10)):
        assert int(Path(f"/proc/{stack.pid(name)}/stat").read_text().rsplit(")", 1)[1].split()[16]) == nice
        autogroup = Path(f"/proc/{stack.pid(name)}/autogroup")
        assert not autogroup.exists() or autogroup.read_text().split()[-1] == str(nice)
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
    assert f"cannot listen on 127.0.0.1:{stack.port}" in result.stderr
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
