"""Start a private redis-server and several chat server processes on loopback."""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def wait_for_http(url, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def stop(process, timeout=10):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


class Database:
    """A throwaway database: SQLite by default, PostgreSQL beside DATABASE_URL."""

    def __init__(self, workdir):
        self.admin_url = os.environ.get("DATABASE_URL", "")
        self.name = None
        if self.admin_url.startswith(("postgres://", "postgresql://")):
            self.name = f"chat_bench_{uuid.uuid4().hex[:8]}"
            parts = urlsplit(self.admin_url)
            url = urlunsplit(parts._replace(path=f"/{self.name}"))
            self.env = {"DATABASE_URL": url}
            self._sql(f'CREATE DATABASE "{self.name}"')
        else:
            self.env = {"SQLITE_PATH": str(Path(workdir) / "bench.sqlite3")}

    def _sql(self, statement):
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)

    def drop(self):
        if self.name:
            self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Cluster:
    """redis-server + `instances` server processes; an async context manager."""

    def __init__(self, *, instances=2, server="daphne", layer="core", extra_env=None):
        self.instances = instances
        self.server = server
        self.layer = layer
        self.extra_env = extra_env or {}
        self.ws_impl = "websockets-sansio"
        self.processes = []
        self.ports = []
        self.redis = None

    def server_pids(self):
        return [p.pid for p in self.processes]

    @property
    def redis_pid(self):
        return self.redis.pid

    def ws_urls(self, slug):
        return [
            (f"ws://127.0.0.1:{port}/ws/rooms/{slug}/", f"http://127.0.0.1:{port}")
            for port in self.ports
        ]

    def _env(self):
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("DATABASE_URL", "REDIS_URL", "DEBUG")
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "chatproject.settings",
                "SECRET_KEY": "bench-only-secret-key",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "0",
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "CHAT_CHANNEL_LAYER": self.layer,
                "STATIC_ROOT": str(Path(self.workdir.name) / "static"),
                "LOG_LEVEL": "WARNING",
                **self.database.env,
                **self.extra_env,
            }
        )
        return env

    def _command(self, port):
        if self.server == "uvicorn":
            return [
                PYTHON, "-m", "uvicorn", "chatproject.asgi:application",
                "--host", "127.0.0.1", "--port", str(port),
                "--log-level", "warning", "--no-access-log", "--lifespan", "off",
                "--ws", self.ws_impl,
            ]  # fmt: skip
        return [
            PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
            "-v", "0", "chatproject.asgi:application",
        ]  # fmt: skip

    async def __aenter__(self):
        return await asyncio.to_thread(self._start)

    async def __aexit__(self, *exc):
        await asyncio.to_thread(self._stop)

    def _start(self):
        self.workdir = tempfile.TemporaryDirectory(prefix="chat-bench-")
        self.log = open(Path(self.workdir.name) / "servers.log", "wb")
        self.redis_port = free_port()
        redis = shutil.which("redis-server")
        if not redis:
            raise SystemExit("redis-server is needed: apt-get install redis-server")
        self.redis = subprocess.Popen(
            [
                redis,
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.database = Database(self.workdir.name)
        env = self._env()
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        for index in range(self.instances):
            port = free_port()
            instance_env = dict(env, CHAT_INSTANCE_ID=f"bench-{index}")
            self.processes.append(
                subprocess.Popen(
                    self._command(port),
                    cwd=ROOT,
                    env=instance_env,
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                )
            )
            self.ports.append(port)
        for port in self.ports:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        self.baseline_rss = sum(rss_bytes(pid) for pid in self.server_pids())
        return self

    def _stop(self):
        for process in self.processes:
            stop(process)
        if self.redis:
            stop(self.redis)
        self.database.drop()
        self.log.close()
        errors = (Path(self.workdir.name) / "servers.log").read_text(errors="replace")
        if "Traceback" in errors or os.environ.get("BENCH_SHOW_LOG"):
            print(errors[-4000:], file=sys.stderr)
        self.workdir.cleanup()
