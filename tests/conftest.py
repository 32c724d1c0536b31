import asyncio
import contextlib
import json
import threading
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import connections

from chat import hub as hub_module
from chat.models import Room
from chat.services import save_queue

ORIGIN = (b"origin", b"http://testserver")
# What a browser sends beside that Origin (chat/origins.py compares the two).
HOST = (b"host", b"testserver")
TIMEOUT = 5


def pytest_sessionfinish(session, exitstatus):
    """The SQLite test database's WAL files go with it: Django removes only the
    database file (chatproject/settings.py puts it in the temporary folder)."""
    database = settings.DATABASES["default"]
    name = database.get("TEST", {}).get("NAME")
    if database["ENGINE"].endswith("sqlite3") and name:
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="session", autouse=True)
def _collected_static(tmp_path_factory):
    """Static files collected as in a deployment (hashed, compressed names)."""
    settings.STATIC_ROOT = str(tmp_path_factory.mktemp("static"))
    call_command("collectstatic", interactive=False, verbosity=0)


@pytest.fixture(scope="session", autouse=True)
def _leaves_told_at_once():
    """A closed socket leaves its room at once, as tests of leaves expect; the
    tests of the grace (tests/unit/test_partings.py) set one."""
    settings.CHAT_PRESENCE_GRACE_SECONDS = 0


def asgi_application():
    from chatproject.asgi import application

    return application


@pytest.fixture(autouse=True)
async def _fresh_hub_and_layer():
    """Each test gets its own hub and in-memory layer, closed at its end."""
    channel_layers.backends.clear()
    yield
    loop = asyncio.get_running_loop()
    hub = hub_module.get_hub.objects.pop(loop, None)
    if hub is not None:
        await hub.close()
    channel_layers.backends.clear()
    # The database threads keep their connections (CONN_MAX_AGE); close them so
    # the test database can be dropped at the end. Not database_sync_to_async:
    # its close_old_connections checks an open connection first, which a test
    # without database access may not do.
    await sync_to_async(connections.close_all)()
    await loop.run_in_executor(save_queue.SAVES, connections.close_all)


@contextlib.asynccontextmanager
async def _held(start_wait):
    """A thread is kept waiting until the block ends: `start_wait` runs the wait
    there and returns what to await for it."""
    release = threading.Event()
    busy = start_wait(release.wait)
    try:
        yield
    finally:
        release.set()
        await busy


def saves_held():
    """Every save waits until the block ends, as behind a slow database."""
    loop = asyncio.get_running_loop()
    return _held(lambda wait: loop.run_in_executor(save_queue.SAVES, wait, 20))


def database_thread_held():
    """Channels' database thread (joins, leaves, reads) is busy until the
    block ends."""
    return _held(lambda wait: asyncio.ensure_future(sync_to_async(wait)(20)))


class Client:
    """A WebSocket client of the whole ASGI application, speaking JSON frames."""

    def __init__(
        self,
        path="/ws/rooms/general/",
        *,
        session_key=None,
        origin=ORIGIN,
        forwarded_for=None,
    ):
        headers = [HOST, origin] if origin else [HOST]
        if forwarded_for:
            headers.append((b"x-forwarded-for", forwarded_for.encode()))
        if session_key:
            headers.append((b"cookie", f"sessionid={session_key}".encode()))
        self.ws = WebsocketCommunicator(asgi_application(), path, headers=headers)

    async def connect(self):
        connected, code = await self.ws.connect(timeout=TIMEOUT)
        return connected, code

    async def send(self, frame):
        await self.ws.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text=None, data=None):
        await self.ws.send_to(text_data=text, bytes_data=data)

    async def receive(self, timeout=TIMEOUT):
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def receive_until(self, kind, timeout=TIMEOUT, **match):
        """Frames up to and including the first of `kind` matching `match`."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout=timeout)
                seen.append(frame)
                if frame["type"] == kind and all(
                    frame.get(k) == v for k, v in match.items()
                ):
                    return frame, seen

    async def expect(self, kind, timeout=TIMEOUT, **match):
        frame, _seen = await self.receive_until(kind, timeout=timeout, **match)
        return frame

    async def nothing(self, timeout=0.2):
        return await self.ws.receive_nothing(timeout=timeout)

    async def join(self, nickname, last_seq=None):
        await self.send({"type": "join", "nickname": nickname, "last_seq": last_seq})
        return await self.expect("welcome")

    async def say(self, text, client_id=None):
        await self.send({"type": "message", "text": text, "client_id": client_id})

    async def close(self):
        if self.ws.future.done():  # ended already (a test cancelled it)
            return
        await self.ws.disconnect()


def _general_room():
    # Transactional tests flush the tables the migration filled: recreate it.
    room, _created = Room.objects.get_or_create(
        slug="general", defaults={"name": "General", "topic": "Anything goes."}
    )
    return room


@pytest.fixture
async def general(transactional_db):
    return await database_sync_to_async(_general_room)()


@pytest.fixture
async def make_client(general):
    clients = []

    async def make(*args, **kwargs):
        client = Client(*args, **kwargs)
        clients.append(client)
        connected, _code = await client.connect()
        assert connected
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def joined(make_client):
    """A client already in the General room under the given nickname."""

    async def join(nickname, **kwargs):
        client = await make_client(**kwargs)
        await client.join(nickname)
        return client

    return join


@pytest.fixture
def session_key(transactional_db):
    store = SessionStore()
    store["visitor"] = True
    store.create()
    return store.session_key


@pytest.fixture
def fresh_drop_counts():
    """Drop counters and their log pacing (chat/drops.py) from zero."""
    from chat import counters, drops

    counters.reset()
    drops.forget()


@pytest.fixture
def drop_lines():
    """The lines chat/drops.py logs meanwhile."""
    import logging

    got = []
    handler = logging.Handler()
    handler.emit = lambda record: got.append(record.getMessage())
    logger = logging.getLogger("chat.drops")
    logger.addHandler(handler)
    yield got
    logger.removeHandler(handler)
