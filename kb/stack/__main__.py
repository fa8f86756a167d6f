"""The commands behind ./run: start (default), test, manage, stop, setup, and web / worker / engine.

A command stops what it started. PostgreSQL and Redis already started by another ./run
command are reused; ones left behind by a command that crashed are taken over. `web`, `worker`
and `engine` run one process of the application in the foreground, as each container of deploy/
does, against the servers that DATABASE_URL, REDIS_URL and ENGINE_URLS name.
"""

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from .layout import PROJECT_DIR, Layout, current_layout, kept_secret
from .postgres import LocalPostgres, PostgresError
from .processes import Service, Supervisor, live_pid, terminate
from .redis import LocalRedis, RedisError

PYTHON = sys.executable
STACK_MARKER = "kb.stack"  # in the command line of every ./run process
# Redis database used by the tests, so a running application's worker never sees test tasks.
TEST_REDIS_DB = 15
# Processes only the supervisor starts, with a word of their command line.
APP_PROCESSES = {"web": "uvicorn", "worker": "celery", "engine": "inference.serve"}
# The generator ./run serves; the engine listens on loopback only, the web side reaches it there.
DEFAULT_ENGINE_MODEL = "qwen2.5-coder-0.5b-instruct"
ENGINE_HOST = "127.0.0.1"


def say(message: str) -> None:
    # On stderr, so that `./run manage bench … > report.json` writes only the command's output.
    print(f"kb: {message}", file=sys.stderr, flush=True)


class StackError(RuntimeError):
    """Something the person running ./run must fix; printed without a traceback."""


class Interrupted(Exception):
    pass


def _interrupt(signum, frame):
    raise Interrupted


# --- backing services ---------------------------------------------------------------------------


def _claim(layout: Layout, name: str) -> bool:
    """Make this command responsible for stopping `name`, unless a live ./run command already is."""
    owner_file = layout.pid_dir / f"{name}.owner"
    if live_pid(owner_file, STACK_MARKER) is not None:
        return False
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    owner_file.write_text(str(os.getpid()))
    return True


def _release(layout: Layout, name: str) -> None:
    (layout.pid_dir / f"{name}.owner").unlink(missing_ok=True)


@contextlib.contextmanager
def _stack_lock(layout: Layout):
    """Serialises ./run commands claiming, joining and leaving the backing services."""
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    with open(layout.pid_dir / "stack.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _other_users(layout: Layout) -> list[int]:
    """Other live ./run commands using the backing services (stale registrations are removed)."""
    users = [live_pid(path, STACK_MARKER) for path in (layout.pid_dir / "users").glob("*")]
    return [pid for pid in users if pid is not None and pid != os.getpid()]


@contextlib.contextmanager
def _leaving(layout: Layout, owner: bool):
    """Leave the users of the backing services. An owner first waits until no other command uses
    them, then stops them within the block while holding the lock, so no command joins meanwhile."""
    announced = False
    while True:
        with _stack_lock(layout):
            others = _other_users(layout)
            if not owner or not others:
                (layout.pid_dir / "users" / str(os.getpid())).unlink(missing_ok=True)
                yield
                return
        if not announced:
            say(f"waiting for {len(others)} other ./run command(s) still using PostgreSQL and Redis")
            announced = True
        time.sleep(0.5)


@contextlib.contextmanager
def backing_services(layout: Layout, supervisor: Supervisor):
    """PostgreSQL and Redis up for the duration of the block (unless DATABASE_URL / REDIS_URL).

    Every command using them registers in var/run/users; the one that started them stops them
    only after the last other user has left, so no command loses them mid-way.
    """
    postgres = None
    redis_owned = False
    try:
        with _stack_lock(layout):
            (layout.pid_dir / "users").mkdir(parents=True, exist_ok=True)
            (layout.pid_dir / "users" / str(os.getpid())).write_text(str(os.getpid()))
            if not os.environ.get("DATABASE_URL"):
                pg = LocalPostgres(layout)
                if _claim(layout, "postgres"):
                    postgres = pg
                    if not pg.is_running():
                        say("starting PostgreSQL")
                        pg.start()
                pg.ensure_database()
            if not os.environ.get("REDIS_URL"):
                redis = LocalRedis(layout)
                if _claim(layout, "redis"):
                    redis_owned = True
                    leftover = live_pid(layout.pid_file("redis"), "redis-server")
                    if leftover is not None:
                        say(f"restarting Redis left over from an earlier run (pid {leftover})")
                        terminate(leftover, timeout=10)
                    say("starting Redis")
                    process = supervisor.start(Service("redis", redis.command()))
                    redis.wait_until_ready(process)
                elif not redis.is_running():
                    raise StackError("Redis belongs to another ./run command but does not answer")
        yield
    finally:
        supervisor.stop_all(keep={"redis"})
        with _leaving(layout, owner=redis_owned or postgres is not None):
            supervisor.stop_all()
            if redis_owned:
                _release(layout, "redis")
            if postgres is not None:
                say("stopping PostgreSQL")
                postgres.stop()
                _release(layout, "postgres")


def _child_env(layout: Layout, **extra: str) -> dict[str, str]:
    env = dict(os.environ, KB_VAR_DIR=str(layout.root), DJANGO_SETTINGS_MODULE="kb.settings")
    env.update(extra)
    return env


def _admin_token(layout: Layout) -> str:
    """The token the engine's admin API takes (model swaps), shared by the processes ./run starts:
    KB_ENGINE_ADMIN_TOKEN, else one generated once and kept in var/."""
    return os.environ.get("KB_ENGINE_ADMIN_TOKEN") or kept_secret(layout.engine_admin_token_file)


def _manage(env: dict[str, str], *args: str) -> int:
    return subprocess.run([PYTHON, str(PROJECT_DIR / "manage.py"), *args], env=env).returncode


# --- commands -----------------------------------------------------------------------------------


def start() -> int:
    layout = current_layout()
    layout.pid_dir.mkdir(parents=True, exist_ok=True)
    running = live_pid(layout.pid_file("supervisor"), STACK_MARKER)
    if running is not None:
        raise StackError(f"already running (pid {running}); stop it with ./run stop")
    layout.pid_file("supervisor").write_text(str(os.getpid()))
    host, port = _web_address()
    engine = _local_engine()
    env = _child_env(
        layout, KB_WORKER_CONCURRENCY=_worker_concurrency(), KB_ENGINE_ADMIN_TOKEN=_admin_token(layout)
    )
    if engine:
        env["ENGINE_URLS"] = engine.url
    supervisor = Supervisor(layout, env)
    try:
        _stop_leftover_app_processes(layout)
        _ensure_port_free(host, port)
        if engine:
            _ensure_port_free(ENGINE_HOST, engine.port)
        with backing_services(layout, supervisor):
            try:
                _start_application(env, supervisor, host, port, engine)
                while True:
                    time.sleep(0.5)
                    for message in supervisor.check():
                        say(message)
            except Interrupted:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                say("stopping...")
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        layout.pid_file("supervisor").unlink(missing_ok=True)


@dataclass(frozen=True)
class LocalEngine:
    # The answering model first (the engine's default), then the rewriting model when it differs.
    models: tuple[str, ...]
    port: int

    @property
    def url(self) -> str:
        return f"http://{ENGINE_HOST}:{self.port}"


def _local_engine() -> LocalEngine | None:
    """The engine ./run starts itself, unless ENGINE_URLS (or ENGINE_URL) points at engines elsewhere."""
    if os.environ.get("ENGINE_URLS") or os.environ.get("ENGINE_URL"):
        return None
    return _engine_settings()


def _engine_settings() -> LocalEngine:
    answering = os.environ.get("KB_ENGINE_MODEL", DEFAULT_ENGINE_MODEL)
    rewriting = os.environ.get("KB_REWRITE_MODEL") or answering
    return LocalEngine(
        models=tuple(dict.fromkeys((answering, rewriting))),
        port=int(os.environ.get("KB_ENGINE_PORT", "8100")),
    )


def _start_application(
    env: dict[str, str], supervisor: Supervisor, host: str, port: int, engine: LocalEngine | None
) -> None:
    if _manage(env, "prepare") != 0:
        raise StackError("manage.py prepare (migrations, static files, admin account) failed")
    if engine:
        _build_model(engine, env)
        process = supervisor.start(_engine_service(engine, ENGINE_HOST))
        _wait_for_port(ENGINE_HOST, engine.port, process, name="engine")
    supervisor.start(_worker_service(env["KB_WORKER_CONCURRENCY"]))
    web = supervisor.start(_web_service(host, port))
    _wait_for_port(host, port, web, name="web server")
    say(f"the knowledge base is running at http://{host}:{port}/  (health: /healthz)")
    say(f"logs in {supervisor.layout.log_dir}; press Ctrl-C to stop")


# How far the engine and the workers give way to the web server for the CPU (KB_ENGINE_NICE,
# KB_WORKER_NICE): answers and ingestion are long jobs that searches should not wait behind.
DEFAULT_NICE = 10

# Scheduler settings passed on to `python -m inference.serve` when set (it checks them).
ENGINE_OPTIONS = {
    "KB_ENGINE_MAX_BATCH": "--max-batch",
    "KB_ENGINE_MAX_QUEUE": "--max-queue",
    "KB_ENGINE_MAX_WAIT_MS": "--max-wait-ms",
    "KB_ENGINE_CONTEXT_LENGTH": "--context-length",
}


def _build_model(engine: LocalEngine, env: dict[str, str]) -> None:
    """A no-op once built: builds are cached per machine (KB_MODELS_DIR or ~/.cache/kb/models)."""
    for model in engine.models:
        build = [PYTHON, "-m", "inference.build", model, "--precision", "int8"]
        if subprocess.run(build, env=env).returncode != 0:
            raise StackError(f"building the model {model} failed (see above)")


def _engine_service(engine: LocalEngine, host: str) -> Service:
    command = [PYTHON, "-m", "inference.serve", "--precision", "int8"]
    command += [option for model in engine.models for option in ("--model", model)]
    command += ["--host", host, "--port", str(engine.port)]
    for variable, option in ENGINE_OPTIONS.items():
        if os.environ.get(variable):
            command += [option, os.environ[variable]]
    return Service("engine", command, stop_timeout=20, nice=_nice("KB_ENGINE_NICE"))


def _nice(variable: str) -> int:
    """The CPU priority below the web server's for a service that works in long stretches: on a
    machine the engine keeps busy, a search (tens of milliseconds) then runs as fast as on an idle
    one (measured: p50 29 ms idle, 43 ms beside a busy engine, 29 ms with the engine at nice 19)."""
    value = os.environ.get(variable, str(DEFAULT_NICE))
    if not (value.isascii() and value.isdigit()) or int(value) > 19:
        raise StackError(f"{variable} must be a whole number from 0 to 19, not {value!r}")
    return int(value)


def _worker_concurrency() -> str:
    """Worker processes: one per core (at most 4). While one parses a document another embeds;
    measured on two cores, two processes keep 0.94 of the encoder's rate, one process 0.71."""
    return os.environ.get("KB_WORKER_CONCURRENCY") or str(min(os.cpu_count() or 1, 4))


def _worker_service(concurrency: str) -> Service:
    command = [PYTHON, "-m", "celery", "-A", "kb", "worker", "--loglevel", "INFO"]
    command += ["--concurrency", concurrency]
    # Without --queues a worker consumes every queue of CELERY_TASK_QUEUES; a deployment gives each
    # kind of worker some of them.
    if os.environ.get("KB_WORKER_QUEUES"):
        command += ["--queues", os.environ["KB_WORKER_QUEUES"]]
    # Unique per worker in one broker: each container has a host name of its own; two workers
    # on one machine need KB_WORKER_NAME.
    command += ["--hostname", f"{os.environ.get('KB_WORKER_NAME', 'kb')}@%h"]
    # Warm shutdown lets a running task finish; acks_late re-queues it if it is killed anyway.
    return Service("worker", command, stop_timeout=30, nice=_nice("KB_WORKER_NICE"))


KEEP_ALIVE_SECONDS = 75

# Database connections each web process keeps open for its requests (KB_DB_POOL_SIZE).
DEFAULT_WEB_POOL_SIZE = 10


def _web_address() -> tuple[str, int]:
    return os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))


def _web_service(host: str, port: int) -> Service:
    workers = os.environ.get("WEB_CONCURRENCY", "1")
    command = [PYTHON, "-m", "uvicorn", "kb.asgi:application", "--host", host, "--port", str(port)]
    command += ["--workers", workers, "--lifespan", "off", "--no-server-header"]
    # Idle connections are kept open longer than the clients in front keep theirs (nginx's upstream
    # keep-alive: 60 s), so that the server never closes one just as a client sends on it (seen as
    # connection errors under `bench load` with uvicorn's default of 5 s).
    command += ["--timeout-keep-alive", str(KEEP_ALIVE_SECONDS)]
    pool = os.environ.get("KB_DB_POOL_SIZE", str(DEFAULT_WEB_POOL_SIZE))
    return Service("web", command, env={"KB_DB_POOL_SIZE": pool})


def _stop_leftover_app_processes(layout: Layout) -> None:
    for name, marker in APP_PROCESSES.items():
        pid = live_pid(layout.pid_file(name), marker)
        if pid is not None:
            say(f"stopping {name} left over from an earlier run (pid {pid})")
            terminate(pid, timeout=10)
            layout.pid_file(name).unlink(missing_ok=True)


def _ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StackError(
                f"cannot listen on {host}:{port} ({error.strerror}); another program uses that port. "
                "Stop it or choose another port, e.g. PORT=8001 ./run"
            ) from None


def _wait_for_port(
    host: str, port: int, process: subprocess.Popen, *, name: str, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"the {name} exited while starting; see its log in var/log/")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise StackError(f"the {name} did not open {host}:{port} within {timeout:.0f} s")


def test(args: list[str]) -> int:
    layout = current_layout()
    extra = {}
    if not os.environ.get("REDIS_URL"):
        extra["REDIS_URL"] = f"{LocalRedis(layout).url}?db={TEST_REDIS_DB}"
    env = _child_env(layout, **extra)
    supervisor = Supervisor(layout, env)
    with backing_services(layout, supervisor):
        return subprocess.run([PYTHON, "-m", "pytest", *args], env=env, cwd=PROJECT_DIR).returncode


def manage(args: list[str]) -> int:
    layout = current_layout()
    env = _child_env(layout, KB_ENGINE_ADMIN_TOKEN=_admin_token(layout))
    engine = _local_engine()
    if engine:  # the engine of a running ./run: `ask` and `evaluate --mode answers` use it
        env["ENGINE_URLS"] = engine.url
    with backing_services(layout, Supervisor(layout, env)):
        return _manage(env, *args)


def single(name: str) -> int:
    """One process in the foreground, replacing this one (exec), so that a container's stop signal
    reaches it directly; it logs to stdout. Nothing else is started: no PostgreSQL, no Redis."""
    env = _child_env(current_layout())
    if name == "engine":
        engine = _engine_settings()
        _build_model(engine, env)
        command = _engine_service(engine, os.environ.get("KB_ENGINE_HOST", ENGINE_HOST)).command
    elif name == "worker":
        env["KB_WORKER_CONCURRENCY"] = _worker_concurrency()
        command = _worker_service(env["KB_WORKER_CONCURRENCY"]).command
    else:
        web = _web_service(*_web_address())
        command, env = web.command, {**env, **web.env}
    os.execve(command[0], command, env)


def stop() -> int:
    layout = current_layout()
    pid = live_pid(layout.pid_file("supervisor"), STACK_MARKER)
    if pid is None:
        say("no ./run is running")
    else:
        say(f"stopping ./run (pid {pid})")
        terminate(pid, timeout=90)
    # Whatever a crashed run left behind goes too.
    _stop_leftover_app_processes(layout)
    if _claim(layout, "redis"):
        leftover = live_pid(layout.pid_file("redis"), "redis-server")
        if leftover is not None:
            say(f"stopping Redis (pid {leftover})")
            terminate(leftover, timeout=10)
        _release(layout, "redis")
    if _claim(layout, "postgres"):
        postgres = LocalPostgres(layout)
        if postgres.is_running():
            say("stopping PostgreSQL")
            postgres.stop()
        _release(layout, "postgres")
    return 0


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("start", [])
    commands = {
        "start": lambda: start(),
        "test": lambda: test(args),
        "manage": lambda: manage(args),
        "stop": lambda: stop(),
        # ./run installs .venv before any command; `setup` does only that (for the images).
        "setup": lambda: say(f".venv is ready for {PYTHON}") or 0,
        "web": lambda: single("web"),
        "worker": lambda: single("worker"),
        "engine": lambda: single("engine"),
    }
    if command not in commands:
        print(__doc__, file=sys.stderr)
        usage = "usage: ./run [start|test [PYTEST ARGS]|manage ARGS|stop|setup|web|worker|engine]"
        print(usage, file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return commands[command]()
    except (StackError, PostgresError, RedisError) as error:
        say(f"error: {error}")
        return 1
    except Interrupted:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
