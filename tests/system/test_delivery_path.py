"""
Under the real servers, room events are written straight to the sockets (and,
under Daphne, to the HTTP transport's event streams)
(chat/transport.py), not sent through ASGI: each process says which path its
server gives in one line at its first socket, and says so again the first time
a socket's deliveries fall back to ASGI. A Daphne, Twisted, autobahn, uvicorn or
websockets release that changed what the direct path reads makes these fail
with that line, which names the attribute that changed.
"""

import asyncio
import importlib.metadata
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from chat import transport
from tests.harness.clients import ChatClient
from tests.harness.database import Database
from tests.harness.fixtures import (
    FreshRoom,
    MakeClient,
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.servers import Cluster, Daphne, Uvicorn, static_env
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.processes

# Each side says this many, so that every socket is sent events in lots and
# alone.
MESSAGES = 6


class CompressingUvicorn(Uvicorn):
    """uvicorn with its default of per-message compression, which the test
    clients accept: their sockets cannot be sent the shared frames."""

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--ws-per-message-deflate")
        command[at + 1] = "true"
        return command


@pytest.fixture(name="cluster")
def fixture_cluster(
    database: Database, tmp_path: Path, _collected_static: None
) -> Iterator[Cluster]:
    """A private Redis; the test adds the servers."""
    with Cluster(tmp_path, database, instances=0, env=static_env()) as cluster:
        yield cluster


def delivery_lines(server: Daphne, what: str = "delivery") -> list[str]:
    """What a server's process logged of its sockets' delivery path (or of its
    event streams': `what` "stream")."""
    return [
        line.partition(" chat.transport ")[2]
        for line in server.log().splitlines()
        if f" chat.transport {what}" in line
    ]


async def chat_both_ways(alice: ChatClient, bob: ChatClient) -> None:
    await alice.expect("joined", nickname="bob")
    for index in range(MESSAGES):
        await asyncio.gather(alice.say(f"a{index}"), bob.say(f"b{index}"))
    for client in (alice, bob):
        await client.expect_messages(2 * MESSAGES)


async def test_daphne_and_uvicorn_write_every_delivery_directly(
    cluster: Cluster, room: FreshRoom, clients: MakeClient
) -> None:
    daphne = cluster.add_server(Daphne)
    uvicorn = cluster.add_server(Uvicorn)
    alice = await clients("alice", room.slug, daphne)
    bob = await clients("bob", room.slug, uvicorn)
    await chat_both_ways(alice, bob)

    for server, name in ((daphne, "daphne"), (uvicorn, "uvicorn")):
        lines = delivery_lines(server)
        expected = f"delivery path=direct server={name} " + " ".join(
            f"{library}={importlib.metadata.version(library)}"
            for library in transport.SERVER_LIBRARIES[name]
        )
        # The line itself is the message: it names what no longer holds.
        assert [line.split(' untested="')[0] for line in lines] == [expected], lines
    assert not cluster.tracebacks()


async def test_a_socket_whose_deliveries_fall_back_is_reported(
    cluster: Cluster, room: FreshRoom, clients: MakeClient
) -> None:
    # What the test above would see of a fallback: compression, which the
    # server's options decide, sends every delivery of these sockets through
    # ASGI while the server as such is written to directly.
    uvicorn = cluster.add_server(CompressingUvicorn)
    alice = await clients("alice", room.slug, uvicorn)
    bob = await clients("bob", room.slug, uvicorn)
    await chat_both_ways(alice, bob)

    # Said once, however many deliveries fell back.
    wait_until(lambda: len(delivery_lines(uvicorn)) >= 2, 5, "the fallback line")
    [start, fallback] = delivery_lines(uvicorn)
    assert start.startswith("delivery path=direct server=uvicorn ")
    assert fallback == (
        'delivery_fallback server=uvicorn reason="per-message compression '
        'negotiated (--ws-per-message-deflate false keeps it off)"'
    )


async def _ask(server: Daphne, head: str, body: bytes = b"") -> bytes:
    """One request on a connection of its own; the whole answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode() + body)
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def _open_stream(server: Daphne, slug: str) -> asyncio.StreamWriter:
    """A participant on the HTTP transport whose event stream has begun."""
    page = await _ask(
        server,
        f"GET /rooms/{slug}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    cookies = dict(re.findall(rb"Set-Cookie: (visitor|csrftoken)=([^;]+)", page))
    cookie = f"visitor={cookies[b'visitor'].decode()}"
    cookie += f"; csrftoken={cookies[b'csrftoken'].decode()}"
    join = json.dumps({"type": "join", "nickname": "streamer"}).encode()
    answer = await _ask(
        server,
        f"POST /http/rooms/{slug}/join HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: {cookie}\r\n"
        f"X-CSRFToken: {cookies[b'csrftoken'].decode()}\r\n"
        f"Content-Length: {len(join)}\r\nConnection: close\r\n\r\n",
        join,
    )
    ticket = re.search(rb'"ticket":"([^"]+)"', answer)
    assert ticket, answer[:300]
    path = f"/http/rooms/{slug}/events?ticket={quote(ticket.group(1).decode())}"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b'"type":"welcome"'), 10)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return writer


async def test_daphne_writes_event_streams_directly(
    cluster: Cluster, room: FreshRoom
) -> None:
    daphne = cluster.add_server(Daphne)
    writer = await _open_stream(daphne, room.slug)
    try:
        wait_until(lambda: delivery_lines(daphne, "stream"), 10, "the stream path line")
        expected = "stream path=direct server=daphne " + " ".join(
            f"{library}={importlib.metadata.version(library)}"
            for library in transport.SERVER_LIBRARIES["daphne"]
        )
        lines = delivery_lines(daphne, "stream")
        assert [line.split(' untested="')[0] for line in lines] == [expected], lines
    finally:
        writer.close()
    assert not cluster.tracebacks()
