"""`manage.py runserver` is Daphne's: the development server speaks WebSocket too."""

import os

import pytest

from tests.harness.http import http_get_sync
from tests.harness.ports import free_port
from tests.harness.process import PYTHON, START_TIMEOUT, Process
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.processes

# The development set-up from the README: nothing but DEBUG=1 and a database file.
NOT_INHERITED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS")


def test_runserver_serves_the_chat_with_daphne(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env |= {
        "DEBUG": "1",
        "SQLITE_PATH": str(tmp_path / "dev.sqlite3"),
        "PYTHONUNBUFFERED": "1",
    }
    server = Process("runserver", tmp_path / "runserver.log")
    server.spawn([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env=env)
    assert server.proc.wait(120) == 0, server.log()
    port = free_port()
    server.spawn(
        [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], env=env
    )
    base = f"http://127.0.0.1:{port}"

    def answers():
        if not server.alive:
            pytest.fail(f"runserver exited:\n{server.log()[-3000:]}")
        try:
            return http_get_sync(f"{base}/", timeout=1)
        except OSError:
            return None

    try:
        status, headers, body = wait_until(answers, START_TIMEOUT, "runserver")
        assert status == 200
        assert b'href="/rooms/general/"' in body
        assert headers["Server"].lower().startswith("daphne")
        assert "Starting ASGI/Daphne" in server.log()
        # In development the static files are served too.
        status, _headers, _body = http_get_sync(f"{base}/static/chat/main.js")
        assert status == 200
    finally:
        server.stop()
    assert not server.alive
