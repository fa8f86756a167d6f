"""Child processes of the local stack: pid files, leftovers of a crashed run, supervision."""

import functools
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .layout import Layout

# A child that dies this often within RESTART_WINDOW seconds is broken, not unlucky.
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0


@dataclass
class Service:
    name: str
    command: list[str]
    # How long it may take to finish its work after SIGTERM before it is killed.
    stop_timeout: float = 10.0
    # How much lower its CPU priority is than the web server's (a nice value, 0 to 19).
    nice: int = 0
    # Variables of its own, over the supervisor's environment.
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    restarts: deque = field(default_factory=lambda: deque(maxlen=MAX_RESTARTS))


def _lower_priority(nice: int) -> None:
    """Run in the child after setsid. With autogroups (Linux's default) each session is scheduled as
    one group against the others, so the group's nice is what gives way to the web server; without
    them, the process's own (its threads inherit it)."""
    os.setpriority(os.PRIO_PROCESS, 0, nice)  # absolute, whatever the supervisor's own nice
    try:
        Path("/proc/self/autogroup").write_text(str(nice))
    except OSError:
        pass  # no autogroups here: the process's nice does it


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def process_cmdline(pid: int) -> str | None:
    """The command line of a live process, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace")


def live_pid(path: Path, marker: str) -> int | None:
    """The pid recorded in `path` if that process still runs and looks like ours.

    A pid file can outlive its process, and the pid can be reused by something else, so
    the command line must contain `marker` too. Stale files are removed.
    """
    pid = read_pid(path)
    if pid is not None and marker in (process_cmdline(pid) or ""):
        return pid
    path.unlink(missing_ok=True)
    return None


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        # Reap it if it is our own child; a zombie would otherwise look alive.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return process_cmdline(pid) not in (None, "")


class Supervisor:
    """Starts services, restarts one that dies, and stops them all in reverse order."""

    def __init__(self, layout: Layout, env: dict[str, str]):
        self.layout = layout
        self.env = env
        self.services: list[Service] = []

    def start(self, service: Service) -> subprocess.Popen:
        self.layout.log_dir.mkdir(parents=True, exist_ok=True)
        self.layout.pid_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.layout.log_dir / f"{service.name}.log", "ab")  # noqa: SIM115 - the child keeps it
        service.process = subprocess.Popen(
            service.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**self.env, **service.env},
            # Own session: Ctrl-C reaches only the supervisor, which then stops children in order.
            start_new_session=True,
            preexec_fn=functools.partial(_lower_priority, service.nice) if service.nice else None,
        )
        log.close()
        self.layout.pid_file(service.name).write_text(str(service.process.pid))
        if service not in self.services:
            self.services.append(service)
        return service.process

    def check(self) -> list[str]:
        """Restart services that died; return messages about what happened.

        Raises RuntimeError when a service keeps dying, so the caller can stop everything.
        """
        messages = []
        for service in self.services:
            if service.process is None or service.process.poll() is None:
                continue
            code = service.process.returncode
            now = time.monotonic()
            service.restarts.append(now)
            if len(service.restarts) == MAX_RESTARTS and now - service.restarts[0] < RESTART_WINDOW:
                raise RuntimeError(
                    f"{service.name} exited {MAX_RESTARTS} times within {RESTART_WINDOW:.0f} s "
                    f"(last exit code {code}); see {self.layout.log_dir / service.name}.log"
                )
            messages.append(f"{service.name} exited with code {code}; restarting it")
            self.start(service)
        return messages

    def stop_all(self, keep: frozenset[str] | set[str] = frozenset()) -> None:
        """Stop the services in reverse order of starting, except those named in `keep`."""
        for service in reversed(self.services):
            if service.name in keep:
                continue
            if service.process is not None and service.process.poll() is None:
                terminate(service.process.pid, service.stop_timeout)
                service.process.wait()
            self.layout.pid_file(service.name).unlink(missing_ok=True)
