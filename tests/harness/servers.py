"""
Chat server processes: Daphne (as startup.sh runs it) or uvicorn (as
docs/scaling.md does), the environment they all start with, and a cluster of
them around one private Redis.
"""

import itertools
import os
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self

import pytest

from .http import http_get_sync
from .ports import free_port
from .process import PYTHON, ROOT, START_TIMEOUT, Process
from .redis import RedisCluster, RedisSentinel, RedisServer
from .waiting import wait_until

SECRET_KEY = "process-test-secret-key-not-for-production"
# Short presence timings so that ghost tests take seconds; the relation
# (presence of a dead instance ends within TIMEOUT + HEARTBEAT) is the same as
# with the defaults of 10 and 30 seconds.
HEARTBEAT_SECONDS = 1
INSTANCE_TIMEOUT_SECONDS = 4


class HasEnv(Protocol):
    """A database as the servers see it: the settings that point at it."""

    @property
    def env(self) -> dict[str, str]: ...


class Daphne(Process):
    """One chat server process (one instance behind the load balancer)."""

    def __init__(
        self,
        name: str,
        workdir: str | Path,
        env: Mapping[str, str],
        args: Sequence[str] = (),
    ) -> None:
        super().__init__(name, Path(workdir) / f"{name}.log")
        self.port = free_port()
        self.env = {**env, "CHAT_INSTANCE_ID": name}
        # Options before the application, as startup.sh passes its own.
        self.args = list(args)

    def start(self) -> None:
        self.spawn(self.command(), env=self.env)
        wait_until(self._healthy, START_TIMEOUT, f"{self.name} to answer /healthz")

    def command(self) -> list[str]:
        return [
            PYTHON,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            *self.args,
            "chatproject.asgi:application",
        ]

    def _healthy(self) -> bool:
        if not self.alive:
            pytest.fail(f"{self.name} exited:\n{self.log()[-3000:]}")
        try:
            status, _headers, _body = http_get_sync(f"{self.http}/healthz", timeout=1)
        except OSError:
            return False
        return status == 200

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return self.http

    def ws_url(self, slug: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/rooms/{slug}/"

    def tracebacks(self) -> int:
        return self.log().count("Traceback")


class Uvicorn(Daphne):
    """The same instance served by uvicorn, the faster option, as
    docs/scaling.md runs it."""

    def command(self) -> list[str]:
        return [
            PYTHON,
            "-m",
            "uvicorn",
            "chatproject.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ws",
            "websockets-sansio",
            "--ws-per-message-deflate",
            "false",
            "--ws-max-size",
            "65536",
            "--lifespan",
            "off",
            "--no-access-log",
            *self.args,
        ]


def server_env(database: HasEnv, redis_url: str, **extra: object) -> dict[str, str]:
    """The environment of every Daphne and manage.py run of a cluster."""
    env = dict(os.environ)
    # The test run's own database settings are never passed on.
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "0",
            "REDIS_URL": redis_url,
            "CHAT_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
            "CHAT_INSTANCE_TIMEOUT_SECONDS": str(INSTANCE_TIMEOUT_SECONDS),
            # Leaves told at once, unless a test of the grace asks for one.
            "CHAT_PRESENCE_GRACE_SECONDS": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(database.env)
    env.update({key: str(value) for key, value in extra.items()})
    return env


def static_env() -> dict[str, str]:
    """Daphne with DEBUG off serves the hashed static files tests/conftest.py
    collected (its session fixture must have run)."""
    from django.conf import settings

    return {"STATIC_ROOT": settings.STATIC_ROOT}


def show_settings(env: Mapping[str, str], *names: str) -> subprocess.CompletedProcess:
    """Django set up in a fresh interpreter with `env` (and nothing else of this
    test run), as a server process starts; the finished process, whose output is
    the named settings as JSON."""
    code = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}, "
        "default=str))"
    )
    return subprocess.run(
        [PYTHON, "-c", code],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "chatproject.settings"},
        capture_output=True,
        text=True,
        timeout=60,
    )


class Cluster:
    """
    A private Redis and N Daphne instances on one shared database.

    Use as a context manager (or call close()): every process started here is
    stopped on the way out, whatever happened.
    """

    _names = itertools.count(1)

    def __init__(
        self,
        workdir: str | Path,
        database: HasEnv,
        *,
        instances: int = 2,
        redis: RedisServer | RedisCluster | RedisSentinel | None = None,
        redis_url: str | None = None,
        env: Mapping[str, object] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.database = database
        self.redis = redis or RedisServer(workdir)
        self.redis_url = redis_url or self.redis.url
        self.extra_env = dict(env or {})
        self.count = instances
        self.servers: list[Daphne] = []

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self) -> dict[str, str]:
        return server_env(self.database, self.redis_url, **self.extra_env)

    def start(self) -> None:
        self.redis.start()
        for _ in range(self.count):
            self.add_server()

    def add_server(
        self, kind: type[Daphne] = Daphne, args: Sequence[str] = (), **env: str
    ) -> Daphne:
        """Start one more instance; `env` overrides the cluster's for it alone."""
        name = f"inst{next(self._names)}-{uuid.uuid4().hex[:4]}"
        server = kind(name, self.workdir, {**self.env(), **env}, args=args)
        self.servers.append(server)
        server.start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.redis.stop()

    def live_servers(self) -> list[Daphne]:
        return [server for server in self.servers if server.alive]

    def tracebacks(self) -> dict[str, int]:
        return {s.name: s.tracebacks() for s in self.servers if s.tracebacks()}

    def rss(self) -> dict[str, int | None]:
        return {server.name: server.rss() for server in self.live_servers()}
