"""
Which WebSocket handshakes reach the chat (chat/origins.py), and the answer to a
path that is no room's (chat/routing.py), against a real Daphne.
"""

import asyncio
import json
import socket

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.conftest import TIMEOUT
from tests.harness.database import shared_database
from tests.harness.servers import Daphne, server_env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with shared_database(tmp_path_factory) as database:
        daphne = Daphne(
            "origins",
            tmp_path_factory.mktemp("origins"),
            server_env(database, ""),
        )
        try:
            daphne.start()
            yield daphne
        finally:
            daphne.stop()


async def open_and_read(server, path, **options):
    """The first frame and the close code of a socket, or the refusal."""
    async with connect(
        f"ws://127.0.0.1:{server.port}{path}", open_timeout=TIMEOUT, **options
    ) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        return frame["code"], ws.close_code


@pytest.mark.processes
async def test_a_real_server_answers_any_path_without_a_traceback(server):
    paths = ["/notws/", "/", "/ws/", "/favicon.ico"] * 10

    answers = await asyncio.gather(
        *(open_and_read(server, path, origin=server.origin) for path in paths)
    )

    assert answers == [("room_not_found", 4404)] * len(paths)
    assert server.tracebacks() == 0
    assert " 500 " not in server.log()


async def refused_status(url, **options):
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(url, open_timeout=TIMEOUT, **options):
            pass
    return refused.value.response.status_code


@pytest.mark.processes
async def test_a_real_server_refuses_foreign_handshakes(server):
    url = server.ws_url("general")
    port = server.port
    # The site's Host with a foreign Origin: what a page of another site sends.
    other_port = await refused_status(url, origin="http://127.0.0.1:9")
    other_scheme = await refused_status(url, origin=f"https://127.0.0.1:{port}")
    no_origin = await refused_status(url)
    # A foreign Host (here over a socket to this server): a page of
    # evil.example whose name resolves here.
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        foreign_host = await refused_status(
            f"ws://evil.example:{port}/ws/rooms/general/",
            origin=f"http://evil.example:{port}",
            sock=sock,
        )

    assert (other_port, other_scheme, no_origin, foreign_host) == (403,) * 4
    assert server.tracebacks() == 0


@pytest.mark.processes
async def test_a_real_server_accepts_its_own_origin(server):
    async with connect(
        server.ws_url("general"), origin=server.origin, open_timeout=TIMEOUT
    ) as ws:
        await ws.send(json.dumps({"type": "join", "nickname": "own", "last_seq": None}))
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))

    assert frame["type"] == "welcome"
