"""The soak's own Redis (append-only file) and MariaDB, on private ports and data folders,
so the fault schedule can stop, kill and restart them without touching anyone else's."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port} after {seconds:.0f} s")


class Server:
    """A server process of the soak: started, stopped (SIGSTOP / SIGCONT), killed."""

    name = "server"

    def __init__(self, folder: Path, log: Path) -> None:
        self.folder, self.log = folder, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        out = self.log.open("ab")
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=out, start_new_session=True
        )
        wait_port(self.port)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


class PrivateRedis(Server):
    name = "redis"

    def command(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def shutdown_nosave(self) -> None:
        with contextlib.suppress(redis.RedisError):
            redis.Redis(port=self.port).shutdown(nosave=True)
        if self.process is not None:
            self.process.wait(timeout=30)


class PrivateMariaDB(Server):
    name = "mariadb"

    def install(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.folder}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def command(self) -> list[str]:
        return [
            "mariadbd",
            "--no-defaults",
            f"--datadir={self.folder}",
            f"--port={self.port}",
            f"--socket={self.folder}/mysqld.sock",
            f"--pid-file={self.folder}/mysqld.pid",
            "--bind-address=127.0.0.1",
            "--user=root",
            "--skip-grant-tables",  # a throw-away server on loopback: no accounts needed
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=1",
            "--max-connections=200",
        ]

    def url(self, database: str = "") -> str:
        return f"mysql+mysqldb://root@127.0.0.1:{self.port}/{database}"
