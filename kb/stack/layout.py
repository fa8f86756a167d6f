"""Where the local stack keeps its data, sockets, logs and pid files.

Everything lives under one folder, `var/` beside manage.py unless KB_VAR_DIR says otherwise,
so a second stack (for example the one a test starts) never touches the first one's data.
"""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent

# Unix sockets are limited to 107 bytes on Linux; PostgreSQL appends "/.s.PGSQL.5432".
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def pg_dir(self) -> Path:
        return self.root / "pg"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        return self.pg_dir / "run"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "log" / "postgresql.log"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def redis_socket(self) -> Path:
        return self.redis_dir / "redis.sock"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @property
    def pid_dir(self) -> Path:
        return self.root / "run"

    @property
    def secret_key_file(self) -> Path:
        return self.root / "secret_key"

    @property
    def engine_admin_token_file(self) -> Path:
        return self.root / "engine_admin_token"

    @property
    def media_dir(self) -> Path:
        return self.root / "files"

    @property
    def static_dir(self) -> Path:
        return self.root / "static"

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"


def kept_secret(path: Path) -> str:
    """The secret in `path`, generated the first time and readable by this user only."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def current_layout() -> Layout:
    return Layout(Path(os.environ.get("KB_VAR_DIR", PROJECT_DIR / "var")).resolve())
