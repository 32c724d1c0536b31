"""
Real processes for tests: a private redis-server, Daphne instances and a
throwaway database they share, plus a WebSocket client that behaves like the
browser's (static/chat/chat.js): a seq cursor, gap filling over HTTP, resending
unconfirmed messages after a reconnect.

Everything runs on 127.0.0.1 on free ports; only the PIDs started here are ever
stopped. Nothing here touches the system Redis on 6379 or pytest-django's test
database.
"""

import asyncio
import contextlib
import http.cookies
import itertools
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET_KEY = "process-test-secret-key-not-for-production"
START_TIMEOUT = 20
STOP_TIMEOUT = 10
# Short presence timings so that ghost tests take seconds; the relation
# (presence of a dead instance ends within TIMEOUT + HEARTBEAT) is the same as
# with the defaults of 10 and 30 seconds.
HEARTBEAT_SECONDS = 1
INSTANCE_TIMEOUT_SECONDS = 4


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _polls(check, timeout, what):
    """check()'s results, one per poll, up to the first true one; fails the test
    with `what` once `timeout` seconds have passed without it. The caller waits
    between polls, as fits its kind of code."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        yield result
    yield result


def wait_until(check, timeout, what, interval=0.05):
    """Poll a condition until it holds; fail the test with `what` otherwise."""
    for result in _polls(check, timeout, what):
        if result:
            return result
        time.sleep(interval)


async def wait_until_async(check, timeout, what, interval=0.05):
    """wait_until for async code: the event loop runs between polls."""
    for result in _polls(check, timeout, what):
        if result:
            return result
        await asyncio.sleep(interval)


def require_redis_server():
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


class Process:
    """A child process with its output in a log file; stopped by its own PID."""

    def __init__(self, name, log_path):
        self.name = name
        self.log_path = Path(log_path)
        self.proc = None

    def spawn(self, args, env=None):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self):
        return self.proc.pid

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, then SIGKILL after `timeout`; always waits for the PID."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def kill(self):
        """SIGKILL at once: a crash, no clean-up of any kind."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)

    def rss(self):
        """Resident memory in bytes (from /proc), or None when not running."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except (OSError, AttributeError):
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class RedisServer(Process):
    """A private redis-server without persistence; stop() and start() again keep
    the port, as a restarted managed Redis would (and it comes back empty)."""

    def __init__(self, workdir, *, tls=None, password=None):
        super().__init__("redis", Path(workdir) / "redis.log")
        self.binary = require_redis_server()
        self.workdir = Path(workdir)
        self.port = free_port()
        # tls: {"cert": path, "key": path, "ca": path}; plain TCP is then off.
        self.tls = tls
        self.password = password

    def start(self):
        args = [self.binary, "--save", "", "--appendonly", "no"]
        args += ["--bind", "127.0.0.1", "--dir", str(self.workdir)]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls["cert"]]
            args += ["--tls-key-file", self.tls["key"]]
            args += ["--tls-ca-cert-file", self.tls["ca"]]
            args += ["--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.spawn(args)
        wait_until(self._answers, START_TIMEOUT, f"redis-server on {self.port}")

    def _answers(self):
        if not self.alive:
            log = self.log()[-2000:]
            # A build without TLS stops at the first tls- option it reads.
            if self.tls and "Bad directive" in log and "tls" in log:
                pytest.skip(f"redis-server has no TLS support here:\n{log}")
            pytest.fail(f"redis-server exited:\n{log}")
        try:
            return self.client().ping()
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def client(self):
        """A redis-py client for inspecting what the layer stored."""
        import redis

        kwargs = {"host": "127.0.0.1", "port": self.port, "socket_timeout": 2}
        if self.tls:
            kwargs.update(ssl=True, ssl_ca_certs=self.tls["ca"])
            kwargs["host"] = "localhost"
        return redis.Redis(password=self.password, **kwargs)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


TABLES = (
    "chat_room",
    "chat_message",
    "chat_member",
    "chat_connection",
    "chat_instance",
)


class Database:
    """
    One database for every process of a test module, made and dropped here.

    With DATABASE_URL set (CI) a separate PostgreSQL database next to it
    (never pytest-django's); otherwise a temporary SQLite file.
    """

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        base = os.environ.get("DATABASE_URL", "")
        self.base_url = base if base.startswith(("postgres", "postgresql")) else ""
        self.name = f"chat_proc_{uuid.uuid4().hex[:10]}"
        self.sqlite_path = self.workdir / "chat.sqlite3"

    @property
    def env(self):
        if self.base_url:
            parts = urlsplit(self.base_url)
            return {"DATABASE_URL": urlunsplit(parts._replace(path=f"/{self.name}"))}
        return {"SQLITE_PATH": str(self.sqlite_path)}

    def _pg(self, url=None):
        import psycopg

        return psycopg.connect(url or self.base_url, autocommit=True, connect_timeout=5)

    def create(self, env):
        if self.base_url:
            with self._pg() as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        result = subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode:
            pytest.fail(f"migrate failed:\n{result.stdout}\n{result.stderr}")

    def drop(self):
        if self.base_url:
            with self._pg() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def query(self, sql, params=()):
        """Rows of one SQL query (placeholders as %s) on the shared database."""
        if self.base_url:
            with self._pg(self.env["DATABASE_URL"]) as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=20)) as conn:
            with conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()

    def create_room(self, slug, name=None):
        """A fresh room, so tests that share the database do not share counts."""
        now = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime())
        self.query(
            "INSERT INTO chat_room (name, slug, topic, archived, created, last_seq) "
            "VALUES (%s, %s, '', %s, %s, 0)",
            (name or slug, slug, False, now),
        )
        return self.query("SELECT id FROM chat_room WHERE slug = %s", (slug,))[0][0]

    def count(self, table, where="", params=()):
        """Rows of one of the chat's tables, optionally filtered."""
        assert table in TABLES, table
        sql = f"SELECT COUNT(*) FROM {table}"  # noqa: S608 - a known table name
        return self.query(sql + (f" WHERE {where}" if where else ""), params)[0][0]


class Daphne(Process):
    """One chat server process (one instance behind the load balancer)."""

    def __init__(self, name, workdir, env, args=()):
        super().__init__(name, Path(workdir) / f"{name}.log")
        self.port = free_port()
        self.env = {**env, "CHAT_INSTANCE_ID": name}
        # Options before the application, as startup.sh passes its own.
        self.args = list(args)

    def start(self):
        self.spawn(self.command(), env=self.env)
        wait_until(self._healthy, START_TIMEOUT, f"{self.name} to answer /healthz")

    def command(self):
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

    def _healthy(self):
        if not self.alive:
            pytest.fail(f"{self.name} exited:\n{self.log()[-3000:]}")
        try:
            status, _headers, _body = http_get_sync(f"{self.http}/healthz", timeout=1)
        except OSError:
            return False
        return status == 200

    @property
    def http(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self):
        return self.http

    def ws_url(self, slug):
        return f"ws://127.0.0.1:{self.port}/ws/rooms/{slug}/"

    def tracebacks(self):
        return self.log().count("Traceback")


class Uvicorn(Daphne):
    """The same instance served by uvicorn, the faster option, as
    docs/scaling.md runs it."""

    def command(self):
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
        ]


def server_env(database, redis_url, **extra):
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
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(database.env)
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Cluster:
    """
    A private Redis and N Daphne instances on one shared database.

    Use as a context manager (or call close()): every process started here is
    stopped on the way out, whatever happened.
    """

    _names = itertools.count(1)

    def __init__(
        self, workdir, database, *, instances=2, redis=None, redis_url=None, env=None
    ):
        self.workdir = Path(workdir)
        self.database = database
        self.redis = redis or RedisServer(workdir)
        self.redis_url = redis_url or self.redis.url
        self.extra_env = env or {}
        self.count = instances
        self.servers = []

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def env(self):
        return server_env(self.database, self.redis_url, **self.extra_env)

    def start(self):
        self.redis.start()
        for _ in range(self.count):
            self.add_server()

    def add_server(self, kind=Daphne, args=(), **env):
        """Start one more instance; `env` overrides the cluster's for it alone."""
        name = f"inst{next(self._names)}-{uuid.uuid4().hex[:4]}"
        server = kind(name, self.workdir, {**self.env(), **env}, args=args)
        self.servers.append(server)
        server.start()
        return server

    def close(self):
        for server in self.servers:
            server.stop()
        self.redis.stop()

    def live_servers(self):
        return [server for server in self.servers if server.alive]

    def tracebacks(self):
        return {s.name: s.tracebacks() for s in self.servers if s.tracebacks()}

    def rss(self):
        return {server.name: server.rss() for server in self.live_servers()}


class PausableProxy:
    """
    A TCP relay on loopback to `port`, run in the test's event loop, that can
    stop passing bytes while keeping its connections open: a network
    partition as a server sees one (queries hang; nothing is refused).
    """

    def __init__(self, port):
        self.target = port
        self.port = None
        self.server = None
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks = set()
        self.writers = set()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.flowing.set()
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def pause(self):
        self.flowing.clear()

    def cut(self):
        """Pause, and break the connections open now: their next query fails
        at once, and new ones hang until their connect timeout."""
        self.pause()
        for writer in list(self.writers):
            writer.transport.abort()

    def resume(self):
        self.flowing.set()

    async def _relay(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(self, source, sink):
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.close()
            self.writers.discard(sink)


# Fixtures of the test modules that start processes; a module takes them by
# importing these functions (pytest knows them by their `name`).


@contextlib.contextmanager
def shared_database(tmp_path_factory):
    """A migrated throwaway database for processes, dropped after."""
    database = Database(tmp_path_factory.mktemp("procdb"))
    try:
        database.create(server_env(database, ""))
        yield database
    finally:
        database.drop()


@pytest.fixture(scope="module", name="database")
def fixture_database(tmp_path_factory):
    """The module's processes share one database."""
    with shared_database(tmp_path_factory) as database:
        yield database


class FreshRoom(NamedTuple):
    slug: str
    id: int


@pytest.fixture(name="room")
def fixture_room(database):
    """A fresh room, so tests that share the module's database do not share
    counts."""
    slug = f"r-{uuid.uuid4().hex[:8]}"
    return FreshRoom(slug, database.create_room(slug))


def static_env():
    """Daphne with DEBUG off serves the hashed static files tests/conftest.py
    collected (its session fixture must have run)."""
    from django.conf import settings

    return {"STATIC_ROOT": settings.STATIC_ROOT}


def show_settings(env, *names):
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


# HTTP -------------------------------------------------------------------------


def http_get_sync(url, cookie=None, timeout=10):
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(  # noqa: S310 - loopback http, checked above
        url, headers={"Accept": "application/json"}
    )
    if cookie:  # a Cookie header value, as session_cookie() gives it
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


async def http_get(url, cookie=None, timeout=10):
    return await asyncio.to_thread(http_get_sync, url, cookie, timeout)


async def session_cookie(server, slug):
    """A visitor's identity, as a browser gets it by opening the room page: the
    Cookie header value that carries it (`visitor=...`, chat/visitors.py)."""
    status, headers, _body = await http_get(f"{server.http}/rooms/{slug}/")
    assert status == 200, f"room page answered {status}"
    for header in headers.get_all("Set-Cookie") or []:
        cookie = http.cookies.SimpleCookie(header)
        if "visitor" in cookie:
            return f"visitor={cookie['visitor'].coded_value}"
    raise AssertionError("the room page set no visitor cookie")


# WebSocket client --------------------------------------------------------------

FRAME_TIMEOUT = 10
# The errors after which static/chat/chat.js sends a message again.
RETRY_ERRORS = ("unavailable", "rate_limited", "not_joined")
RESEND_AFTER = 1.0


class ChatClient:
    """
    One browser tab in one room, speaking the protocol as static/chat/chat.js
    does: messages are kept once each by seq, a gap (a missed event, a pong
    with a newer last_seq) is filled from /rooms/<slug>/messages?after=, and on
    reconnecting it joins with its last_seq and resends what was not confirmed.

    With `servers` given it reconnects by itself when the socket drops, to the
    next server that accepts it (what a load balancer does for a browser).
    """

    def __init__(
        self,
        nickname,
        slug,
        *,
        cookie=None,
        servers=None,
        keep_messages=True,
        forwarded_for=None,
    ):
        self.nickname = nickname
        # What the front end would add as X-Forwarded-For (CHAT_PROXY_HOPS=1).
        self.forwarded_for = forwarded_for
        self.slug = slug
        self.cookie = cookie
        self.servers = list(servers or [])
        self.server = None
        self.ws = None
        self.frames = []
        self.changed = asyncio.Condition()
        self.reader = None
        self.reconnecting = None
        self.closing = False
        # Message frames stay in `frames` too unless a load test says otherwise.
        self.keep_messages = keep_messages
        # The browser's view: seq -> message text, and the cursor below which
        # every message is known.
        self.messages = {}
        self.cursor = None
        self.pending = {}
        self.resent = set()
        # Refused for good (client_id -> text), and how many refusals were
        # retried.
        self.failed = {}
        self.retries = 0
        self.resending = set()
        self._client_ids = itertools.count(1)
        # Seqs of live frames on the current socket: a repeat is a server bug.
        self.socket_seqs = set()
        self.repeated_frames = 0
        self.participants = None
        self.users = set()
        self.gap_task = None
        self.drops = []
        self.reconnects = []
        # Seconds from the sending of someone else's stamped message to its
        # live arrival here.
        self.latencies = []

    # Connection ----------------------------------------------------------------

    async def connect(self, server, timeout=FRAME_TIMEOUT, sock=None):
        """Open a socket to `server` (over `sock`, a connected TCP socket, if
        given), join and take the welcome."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if self.forwarded_for:
            headers["X-Forwarded-For"] = self.forwarded_for
        self.ws = await ws_connect(
            server.ws_url(self.slug),
            origin=server.origin,
            additional_headers=headers,
            open_timeout=timeout,
            ping_interval=None,
            close_timeout=2,
            sock=sock,
        )
        self.server = server
        self.socket_seqs = set()
        mark = len(self.frames)
        self.reader = asyncio.create_task(self._read(self.ws))
        await self.send(
            {"type": "join", "nickname": self.nickname, "last_seq": self.cursor}
        )
        welcome = await self.expect("welcome", since=mark, timeout=timeout)
        for frame in welcome["history"]:
            self._message(frame, live=False)
        self._advance(welcome["last_seq"])
        if welcome.get("has_more"):
            self.schedule_gap_fill(delay=0)
        self.participants = welcome["participants"]
        self.users = set(welcome["users"])
        for client_id, text in list(self.pending.items()):
            self.resent.add(client_id)
            await self.send({"type": "message", "text": text, "client_id": client_id})
        return welcome

    async def close(self):
        self.closing = True
        for task in (self.reconnecting, self.gap_task, *self.resending):
            if task and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.reader, 5)

    def abort(self):
        """Drop the TCP connection without a closing handshake."""
        self.closing = True
        if self.ws is not None:
            self.ws.transport.abort()

    async def _read(self, ws):
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    self._message(frame, live=True)
                    if not self.keep_messages:
                        continue
                elif frame.get("type") == "pong":
                    if self.cursor is not None and frame["last_seq"] > self.cursor:
                        self.schedule_gap_fill(delay=0)
                elif frame.get("type") == "error" and frame.get("client_id"):
                    self._refused(frame)
                elif frame.get("type") in ("joined", "left"):
                    self.participants = frame["participants"]
                    if frame["type"] == "joined":
                        self.users.add(frame["nickname"])
                    else:
                        self.users.discard(frame["nickname"])
                async with self.changed:
                    self.frames.append(frame)
                    self.changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self.changed:
                self.frames.append({"type": "_closed", "code": ws.close_code})
                self.changed.notify_all()
            if ws is self.ws and not self.closing:
                self.drops.append(time.monotonic())
                if self.servers:
                    self.reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self):
        for attempt in itertools.count():
            await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
            # Try the others first: the one that dropped us may be gone.
            order = sorted(self.servers, key=lambda s: s is self.server)
            for server in order:
                try:
                    await self.connect(server, timeout=5)
                except (OSError, TimeoutError, websockets.WebSocketException):
                    continue
                self.reconnects.append(time.monotonic())
                return

    # Sending -------------------------------------------------------------------

    async def send(self, frame):
        """Send if the socket is open; False otherwise (as the browser's send)."""
        try:
            await self.ws.send(json.dumps(frame))
        except (websockets.ConnectionClosed, AttributeError):
            return False
        return True

    async def say(self, text):
        """Send a message with a client_id; it stays pending until echoed."""
        client_id = f"{self.nickname}-{next(self._client_ids)}"
        self.pending[client_id] = text
        await self.send({"type": "message", "text": text, "client_id": client_id})
        return client_id

    async def ping(self):
        return await self.send({"type": "ping"})

    def _refused(self, frame):
        """As the page does: a message the server could not take just now goes
        again later with the same client_id; one refused for good is dropped."""
        client_id = frame["client_id"]
        if client_id not in self.pending:
            return
        if frame["code"] not in RETRY_ERRORS:
            self.failed[client_id] = self.pending.pop(client_id)
            return
        self.retries += 1
        text = self.pending[client_id]

        async def again():
            await asyncio.sleep(RESEND_AFTER)
            if client_id in self.pending:
                self.resent.add(client_id)
                await self.send(
                    {"type": "message", "text": text, "client_id": client_id}
                )

        task = asyncio.create_task(again())
        self.resending.add(task)
        task.add_done_callback(self.resending.discard)

    # Receiving -----------------------------------------------------------------

    def _message(self, frame, live):
        seq = frame["seq"]
        if live:
            # A resend is answered with the saved copy even when the original
            # already came live on this socket: that one is not a repeat.
            if seq in self.socket_seqs and frame.get("client_id") not in self.resent:
                self.repeated_frames += 1
            self.socket_seqs.add(seq)
            sent_at = _sent_at(frame["text"])
            if sent_at is not None and frame["nickname"] != self.nickname:
                self.latencies.append(time.time() - sent_at)
        self.pending.pop(frame.get("client_id"), None)
        self.messages.setdefault(seq, frame["text"])
        if self.cursor is not None and seq > self.cursor + 1:
            self.schedule_gap_fill()
        self._advance(self.cursor or 0)

    def _advance(self, through):
        cursor = max(self.cursor or 0, through)
        while cursor + 1 in self.messages:
            cursor += 1
        self.cursor = cursor

    def schedule_gap_fill(self, delay=0.3):
        # A message that came early usually means the one before is on its way
        # (another sender's, through the other instance); wait a little as
        # chat.js does, and fetch only if the gap is still open then.
        if self.gap_task is None or self.gap_task.done():
            self.gap_task = asyncio.create_task(self._fill_gap(delay))

    async def _fill_gap(self, delay):
        await asyncio.sleep(delay)
        if delay and max(self.messages, default=0) <= (self.cursor or 0):
            return
        with contextlib.suppress(OSError):
            await self.fill_gap()

    async def fill_gap(self):
        """Fetch every message after the cursor from the HTTP history API."""
        server = self.server or self.servers[0]
        while True:
            url = f"{server.http}/rooms/{self.slug}/messages?after={self.cursor or 0}"
            status, _headers, body = await http_get(f"{url}&limit=200")
            if status != 200:
                raise OSError(f"history answered {status}")
            page = json.loads(body)
            for frame in page["messages"]:
                self._message(frame, live=False)
            self._advance(page["through"])
            if not page["has_more"]:
                return

    async def settle(self, last_seq, timeout=30):
        """Ping and fill gaps until every message up to `last_seq` is known and
        nothing this client sent is unconfirmed."""
        deadline = time.monotonic() + timeout
        while self.cursor is None or self.cursor < last_seq or self.pending:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.nickname}: cursor {self.cursor} of {last_seq}, "
                    f"{len(self.pending)} unconfirmed after {timeout}s"
                )
            # Unconfirmed messages are resent on reconnecting only, as the
            # browser does.
            await self.ping()
            with contextlib.suppress(OSError):
                await self.fill_gap()
            await asyncio.sleep(0.2)

    def texts(self):
        """The messages as this client shows them, in seq order."""
        return [self.messages[seq] for seq in sorted(self.messages)]

    async def wait(self, check, what, timeout=FRAME_TIMEOUT):
        """Wait, frame by frame, until check() is true; returns its value."""
        try:
            async with asyncio.timeout(timeout), self.changed:
                return await self.changed.wait_for(check)
        except TimeoutError:
            seen = [f["type"] for f in self.frames][-20:]
            pytest.fail(
                f"{self.nickname}: no {what} within {timeout}s; last frames: {seen}"
            )

    async def expect(self, kind, *, since=0, timeout=FRAME_TIMEOUT, **match):
        """The first frame of `kind` matching `match` from index `since` on."""

        def find():
            for frame in self.frames[since:]:
                if frame["type"] == kind and all(
                    frame.get(k) == v for k, v in match.items()
                ):
                    return frame
            return None

        return await self.wait(find, f"{kind} {match}", timeout)

    async def expect_messages(self, count, timeout=FRAME_TIMEOUT):
        """Wait until `count` live message frames arrived on this client."""
        await self.wait(
            lambda: len(self.of_type("message")) >= count,
            f"{count} messages",
            timeout,
        )

    def mark(self):
        return len(self.frames)

    def of_type(self, kind, since=0):
        return [f for f in self.frames[since:] if f["type"] == kind]


def stamped(label):
    """A message text that carries its send time (for latency figures)."""
    # Wall-clock time, comparable with the time the server saved it.
    return f"{label}@{time.time():.6f}"


def _sent_at(text):
    head, _sep, stamp = text.rpartition("@")
    if not head:
        return None
    try:
        return float(stamp)
    except ValueError:
        return None


def password_url(password, port, host="localhost"):
    """rediss:// URL with the key URL-encoded, as Azure's keys need."""
    return f"rediss://:{quote(password, safe='')}@{host}:{port}/0"


@pytest.fixture(name="clients")
async def fixture_clients():
    """Connect ChatClients, each a visitor of its own (a fresh cookie) unless
    given a cookie (None: no cookie at all); all closed after the test."""
    made = []

    async def make(nickname, slug, server, *, servers=None, cookie=True):
        if cookie is True:
            cookie = await session_cookie(server, slug)
        client = ChatClient(nickname, slug, cookie=cookie, servers=servers)
        made.append(client)
        await client.connect(server)
        return client

    yield make
    await asyncio.gather(*(client.close() for client in made))
