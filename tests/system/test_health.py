"""
/healthz and /readyz of a real server process, as a load balancer's probe sees
them: any Host header, plain http, 503 naming the database when it is down.
"""

import contextlib
import http.client
import json
import os
import sqlite3
import subprocess
import time

import pytest

from chat import health
from tests.harness.ports import free_port
from tests.harness.process import PYTHON, ROOT
from tests.harness.servers import SECRET_KEY, Daphne

pytestmark = pytest.mark.processes

PROBE_HOST = "10.0.0.7"  # an internal address, not in ALLOWED_HOSTS


def fetch(port, path, headers=None, method="GET"):
    """One HTTP request to a local server: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def server_env(**extra):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def daphne(tmp_path, env):
    server = Daphne("health", tmp_path, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def probe(server, path):
    status, _headers, body = fetch(server.port, path, {"Host": PROBE_HOST})
    return status, json.loads(body)


def test_readyz_names_the_database_when_it_is_down(tmp_path):
    closed = free_port()
    env = server_env(DATABASE_URL=f"postgres://chat@127.0.0.1:{closed}/chat")

    with daphne(tmp_path, env) as server:
        live = probe(server, "/healthz")
        status, body = probe(server, "/readyz")
        site, _headers, _body = fetch(server.port, "/", {"Host": PROBE_HOST})
        log = server.log()

    assert live == (200, {"status": "ok"})
    # Probes answer any Host header; the site still refuses a foreign one.
    assert site == 400
    assert status == 503
    assert body["failing"] == ["database"]
    assert body["checks"] == {
        "database": "failed: OperationalError",
        "channel_layer": "ok",
    }
    [line] = [line for line in log.splitlines() if "readyz_failed" in line]
    assert "dependency=database cause=OperationalError(" in line
    assert "refused" in line


def test_readyz_fails_fast_on_a_locked_sqlite_database_and_recovers(tmp_path):
    path = tmp_path / "chat.sqlite3"
    env = server_env(SQLITE_PATH=str(path))
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )

    with daphne(tmp_path, env) as server:
        before = probe(server, "/readyz")
        # Another process holds the file: every other connection is refused.
        lock = sqlite3.connect(path, isolation_level=None)
        try:
            lock.execute("PRAGMA locking_mode=EXCLUSIVE")
            lock.execute("BEGIN EXCLUSIVE")
            lock.execute("UPDATE chat_room SET topic = topic")
            # Past the time a result is reused for.
            time.sleep(health.REUSE_SECONDS)
            # The probe gives up after its own short timeout, not the 20 s the
            # chat's queries wait for a busy file.
            locked = probe(server, "/readyz")
        finally:
            lock.close()
        time.sleep(health.REUSE_SECONDS)
        after = probe(server, "/readyz")

    assert before[0] == 200
    assert locked[0] == 503
    assert locked[1]["failing"] == ["database"]
    assert after[0] == 200
