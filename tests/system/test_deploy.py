"""
The deployment, proved on this machine as App Service would run it: a clean
environment with DEBUG unset, startup.sh (migrations, static files, Daphne) and
web.config's command line, a private Redis, a throwaway database, and real
clients over HTTP and WebSocket. Nothing here reaches Azure.
"""

import asyncio
import gzip
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import websockets
from django.conf import settings
from websockets.asyncio.client import connect

from tests.harness.ports import free_port
from tests.harness.process import ROOT, Process
from tests.harness.redis import RedisServer
from tests.harness.servers import show_settings
from tests.harness.waiting import wait_until
from tests.system.test_health import PROBE_HOST, fetch

pytestmark = pytest.mark.processes

SECRET_KEY = secrets.token_urlsafe(50)
# What App Service's TLS front end adds to every request it forwards.
FROM_HTTPS = {"X-Forwarded-Proto": "https"}
START_TIMEOUT = 60
FRAME_TIMEOUT = 10


def clean_env(**settings_):
    """The environment of a fresh App Service instance: the app's settings and
    nothing of this test run's own (pytest-env's keys, DATABASE_URL)."""
    venv_bin = Path(sys.executable).parent  # the build's virtual environment
    env = {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "SECRET_KEY": SECRET_KEY,
    }
    env.update(settings_)
    return env


def manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# Settings under a production environment -------------------------------------


def test_check_deploy_finds_nothing_in_production():
    env = clean_env(WEBSITE_HOSTNAME="chat-prod.azurewebsites.net")

    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize(
    ("given", "missing"),
    [({"ALLOWED_HOSTS": "chat.example.com"}, "SECRET_KEY"), ({}, "ALLOWED_HOSTS")],
)
def test_with_debug_unset_it_refuses_to_start_and_says_what_to_set(given, missing):
    env = clean_env(**given)
    if missing == "SECRET_KEY":
        del env["SECRET_KEY"]

    refused = manage("check", env=env)
    asked_for_debug = manage("check", env={**env, "DEBUG": "1"})

    assert refused.returncode != 0
    assert f"Set {missing} to" in refused.stderr
    assert asked_for_debug.returncode == 0, asked_for_debug.stderr


def settings_of(env, *names):
    result = show_settings(env, *names)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_app_service_host_name_is_allowed_and_trusted_with_the_optional_lists():
    names = ("DEBUG", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "SESSION_COOKIE_SECURE")
    env = clean_env(
        WEBSITE_HOSTNAME="chat-prod.azurewebsites.net",
        ALLOWED_HOSTS="chat.example.com",
        CSRF_TRUSTED_ORIGINS="https://chat.example.com",
    )

    production = settings_of(env, *names)
    plain_http = settings_of({**env, "SECURE_COOKIES": "0"}, *names)

    assert production == {
        "DEBUG": False,
        "ALLOWED_HOSTS": ["chat.example.com", "chat-prod.azurewebsites.net"],
        "CSRF_TRUSTED_ORIGINS": [
            "https://chat.example.com",
            "https://chat-prod.azurewebsites.net",
        ],
        "SESSION_COOKIE_SECURE": True,
    }
    assert plain_http["SESSION_COOKIE_SECURE"] is False


# startup.sh as App Service runs it ---------------------------------------------


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory):
    """An empty database of the deployment's own: a PostgreSQL one beside the
    test run's when DATABASE_URL names PostgreSQL, else a new SQLite file."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'chat.sqlite3'}"
        return
    import psycopg

    name = f"chat_deploy_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def app_settings(redis, database_url, tmp_path_factory):
    """App settings as the deploy doc sets them, pointed at local services."""
    return {
        "WEBSITE_HOSTNAME": "127.0.0.1",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        # Not collected yet: startup.sh has to do it.
        "STATIC_ROOT": str(tmp_path_factory.mktemp("static")),
    }


class Server(Process):
    def __init__(self, name, workdir):
        super().__init__(name, Path(workdir) / f"{name}.log")
        self.port = free_port()

    def start(self, args, env):
        self.spawn(args, env=env)
        wait_until(self._answers, START_TIMEOUT, f"{self.name} to answer")

    def _answers(self):
        if not self.alive:
            pytest.fail(f"{self.name} exited:\n{self.log()[-3000:]}")
        try:
            return fetch(self.port, "/healthz")[0] == 200
        except OSError:
            return False

    @property
    def ws_url(self):
        return f"ws://127.0.0.1:{self.port}/ws/rooms/general/"

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def startup(app_settings, tmp_path_factory):
    server = Server("startup", tmp_path_factory.mktemp("startup"))
    env = clean_env(PORT=str(server.port), **app_settings)
    try:
        server.start(["bash", "startup.sh"], env)
        yield server
    finally:
        server.stop()


def test_startup_migrates_collects_static_and_execs_daphne(startup):
    log = startup.log()
    cmdline = Path(f"/proc/{startup.pid}/cmdline").read_bytes().split(b"\0")
    args = [arg.decode() for arg in cmdline if arg]
    status, _headers, body = fetch(startup.port, "/readyz", {"Host": PROBE_HOST})

    assert "Applying chat.0001_initial... OK" in log
    assert "static files copied" in log
    # The shell's PID is Daphne's now: signals from App Service reach it.
    assert args[1:3] == ["-m", "daphne"]
    assert args[args.index("--port") + 1] == str(startup.port)
    assert args[args.index("--bind") + 1] == "0.0.0.0"  # noqa: S104 - as in a container
    # The client's address comes from the app (chat/addresses.py), not from
    # Daphne's reading of X-Forwarded-For, which believes what the client wrote.
    assert "--proxy-headers" not in args
    assert "Listening on TCP address 0.0.0.0:" in log
    assert (status, json.loads(body)["checks"]) == (
        200,
        {"database": "ok", "channel_layer": "ok"},
    )


def daphne_options(args):
    """Daphne's options from a command line, without where it listens."""
    options = args[args.index("daphne") + 1 :]
    pairs = {}
    while options:
        option = options.pop(0)
        if option.startswith("--") and option not in ("--proxy-headers",):
            pairs[option] = options.pop(0)
        else:
            pairs[option] = True
    for where in ("--bind", "--port"):
        pairs.pop(where)
    return pairs


def test_websocket_limits_match_the_protocol_and_the_proxies(startup):
    cmdline = Path(f"/proc/{startup.pid}/cmdline").read_bytes().split(b"\0")
    options = daphne_options([arg.decode() for arg in cmdline if arg])

    assert int(options["--websocket-max-message-size"]) == settings.CHAT_MAX_FRAME_BYTES
    assert int(options["--websocket-max-frame-size"]) == settings.CHAT_MAX_FRAME_BYTES
    # Application Gateway's default backend request timeout is 20 s.
    assert int(options["--ping-interval"]) < 20
    assert int(options["--ping-timeout"]) > 0


def page(server, path="/rooms/general/"):
    status, headers, body = fetch(server.port, path, FROM_HTTPS)
    assert status == 200, body[:500]
    return headers, body.decode()


def test_static_files_are_hashed_compressed_and_cached_for_good(startup):
    _headers, html = page(startup)
    [script] = re.findall(r'src="(/static/chat/main\.[0-9a-f]{12}\.js)"', html)

    status, plain_headers, plain = fetch(startup.port, script, FROM_HTTPS)
    gz_status, gz_headers, gz = fetch(
        startup.port, script, {**FROM_HTTPS, "Accept-Encoding": "gzip"}
    )

    assert status == gz_status == 200
    assert plain_headers.get("Content-Encoding") is None
    assert gz_headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(gz) == plain
    # Its modules are imported by their hashed names too, cached as long.
    assert re.search(rb'from "\./connection\.[0-9a-f]{12}\.js";', plain)
    for headers in (plain_headers, gz_headers):
        cache = headers["Cache-Control"]
        assert "max-age=315360000" in cache
        assert "immutable" in cache


def test_brotli_when_the_browser_asks_for_it(startup):
    brotli = pytest.importorskip(
        "brotli", reason="Brotli is not installed (pip install whitenoise[brotli])"
    )
    _headers, html = page(startup)
    [script] = re.findall(r'src="(/static/chat/main\.[0-9a-f]{12}\.js)"', html)

    _status, _plain_headers, plain = fetch(startup.port, script, FROM_HTTPS)
    status, headers, body = fetch(
        startup.port, script, {**FROM_HTTPS, "Accept-Encoding": "br, gzip"}
    )

    assert status == 200
    assert headers["Content-Encoding"] == "br"
    assert brotli.decompress(body) == plain


def test_https_front_end_gets_secure_cookies_and_hsts_plain_http_a_redirect(startup):
    headers, _html = page(startup)
    cookies = headers.get_all("Set-Cookie")
    status, plain_headers, _body = fetch(startup.port, "/")

    [visitor] = [c for c in cookies if c.startswith("visitor=")]
    assert "; Secure" in visitor
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert status == 301
    assert plain_headers["Location"] == f"https://127.0.0.1:{startup.port}/"


async def expect(ws, kind, timeout=FRAME_TIMEOUT):
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return frame


async def join(server, nickname):
    ws = await connect(server.ws_url, origin=server.origin, open_timeout=FRAME_TIMEOUT)
    await ws.send(json.dumps({"type": "join", "nickname": nickname}))
    welcome = await expect(ws, "welcome")
    return ws, welcome


async def test_chat_over_a_real_websocket(startup):
    text = f"first words {uuid.uuid4().hex}"
    ws, welcome = await join(startup, "alice")
    try:
        await ws.send(json.dumps({"type": "message", "text": text}))
        message = await expect(ws, "message")
        # Ready while this instance's hub waits on Redis for room events.
        ready, _headers, _body = await asyncio.to_thread(fetch, startup.port, "/readyz")
    finally:
        await ws.close()

    assert welcome["room"]["slug"] == "general"
    assert (message["seq"], message["text"], message["nickname"]) == (1, text, "alice")
    assert ready == 200
    log = wait_until(
        lambda: (log := startup.log()) and " join room=general " in log and log,
        FRAME_TIMEOUT,
        "the join in the log",
    )
    assert text not in log


async def test_frames_over_64_kib_are_cut_off_by_daphne(startup):
    ws, _welcome = await join(startup, "bob")
    try:
        # Exactly at the limit: the chat itself answers (too long for a message).
        at_limit = json.dumps({"type": "message", "text": ""})
        at_limit = at_limit[:-2] + "x" * (65536 - len(at_limit)) + '"}'
        assert len(at_limit.encode()) == 65536
        await ws.send(at_limit)
        assert (await expect(ws, "error"))["code"] == "message_too_long"
        await ws.send(json.dumps({"type": "ping"}))
        await expect(ws, "pong")

        # One byte more: Daphne drops the connection before the chat sees it.
        await ws.send(at_limit[:-2] + 'x"}')
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(FRAME_TIMEOUT):
                await expect(ws, "never")
    finally:
        await ws.close()
    assert ws.close_code == 1006  # autobahn fails the connection by dropping it
    assert fetch(startup.port, "/healthz")[0] == 200


# web.config (IIS HttpPlatformHandler), run by hand ------------------------------


def web_config():
    return ET.parse(ROOT / "web.config").getroot()  # noqa: S314 - our own file


def web_config_command(port):
    """processPath and arguments of web.config as HttpPlatformHandler would run
    them here: the same virtual environment (Scripts\\python.exe on Windows is
    bin/python here), %HTTP_PLATFORM_PORT% and the file's own variables set."""
    platform = web_config().find("system.webServer/httpPlatform")
    variables = {
        e.get("name"): e.get("value")
        for e in platform.iterfind("environmentVariables/environmentVariable")
    }
    process_path = platform.get("processPath")
    assert process_path.replace("\\", "/") == "./.venv/Scripts/python.exe"
    arguments = platform.get("arguments")
    for name, value in {**variables, "HTTP_PLATFORM_PORT": str(port)}.items():
        arguments = arguments.replace(f"%{name}%", value)
    assert "%" not in arguments
    return [sys.executable, *shlex.split(arguments)], variables


def test_web_config_turns_iis_websockets_on_and_logs_stdout():
    root = web_config()
    platform = root.find("system.webServer/httpPlatform")

    assert root.find("system.webServer/webSocket").get("enabled") == "true"
    assert platform.get("stdoutLogEnabled") == "true"
    handler = root.find("system.webServer/handlers/add")
    assert handler.get("modules") == "httpPlatformHandler"


def test_web_config_runs_daphne_like_startup_sh(startup):
    command, _variables = web_config_command(port=8123)
    cmdline = Path(f"/proc/{startup.pid}/cmdline").read_bytes().split(b"\0")

    assert daphne_options(command) == daphne_options(
        [arg.decode() for arg in cmdline if arg]
    )


@pytest.fixture(scope="module")
def iis_daphne(startup, app_settings, tmp_path_factory):
    """The command IIS would start, beside startup.sh's instance (which applied
    the migrations), on the same database and Redis."""
    server = Server("web-config", tmp_path_factory.mktemp("webconfig"))
    command, variables = web_config_command(server.port)
    try:
        server.start(command, clean_env(**app_settings, **variables))
        yield server
    finally:
        server.stop()


async def test_web_config_server_chats_and_relays_between_instances(
    iis_daphne, startup
):
    carol, _welcome = await join(iis_daphne, "carol")
    dave, _welcome = await join(startup, "dave")
    try:
        await carol.send(json.dumps({"type": "message", "text": "via IIS"}))
        own = await expect(carol, "message")
        relayed = await expect(dave, "message")
    finally:
        await carol.close()
        await dave.close()

    assert own["text"] == relayed["text"] == "via IIS"
    assert own["seq"] == relayed["seq"]
    assert own["seq"] >= 1


# Last: App Service stops an instance with SIGTERM ---------------------------------


def test_sigterm_stops_daphne(startup):
    startup.proc.terminate()
    code = startup.proc.wait(timeout=15)

    assert code == 0, startup.log()[-2000:]
