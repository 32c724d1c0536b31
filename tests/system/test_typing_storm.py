"""
A typing storm across two instances must not cost a message its live delivery:
hundreds of sockets typing at the allowed rate while two people chat, one on
each instance. Both see every message live (the sender its own echo too), once.
"""

import asyncio
import base64
import contextlib
import os
import time

import pytest
from websockets.frames import Frame, Opcode

from tests.harness.clients import stamped
from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.servers import Cluster, static_env

pytestmark = pytest.mark.processes

TYPERS = 300
# The signal budget of a socket (chat/consumers.py): a burst of 10, then 5/s.
TYPING_PER_SECOND = 5
STORM_SECONDS = 10.0
MESSAGES = 40
# Each typer sends this many typing frames, then one stop_typing, as a person
# typing in bursts does; a stop is a change that coalescing cannot leave out.
TYPING_BURST = 4
# The two chatting clients send faster than a person; the message rate limit is
# not what this is about.
FAST_SENDERS = {"CHAT_RATE_BURST": 1000, "CHAT_RATE_PER_SECOND": 1000}


def masked(frame):
    # One mask for every copy of a frame: the server unmasks, it does not judge.
    return Frame(Opcode.TEXT, frame.encode()).serialize(mask=True)


TYPING = masked('{"type":"typing"}')
STOP_TYPING = masked('{"type":"stop_typing"}')


class Typer(asyncio.Protocol):
    """
    A socket that joins and then only types. What the room sends it is thrown
    away unread: parsing thousands of typing frames a second in the test would
    cost the two cores more than the servers' work it is meant to load.
    """

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.welcomed = loop.create_future()
        self.buffer = bytearray()
        self.upgraded = False
        self.sent = 0
        self.received = 0

    @classmethod
    async def connect(cls, server, slug, nickname):
        loop = asyncio.get_running_loop()
        _transport, typer = await loop.create_connection(cls, "127.0.0.1", server.port)
        key = base64.b64encode(os.urandom(16)).decode()
        typer.transport.write(
            (
                f"GET /ws/rooms/{slug}/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {server.origin}\r\n\r\n"
            ).encode()
        )
        join = f'{{"type":"join","nickname":"{nickname}","last_seq":null}}'
        # Sent once the handshake is answered (servers drop what comes before).
        typer.join = masked(join)
        await asyncio.wait_for(typer.welcomed, 30)
        return typer

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError("closed before welcome"))

    def data_received(self, data):
        self.received += len(data)
        if self.welcomed.done():
            return
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.transport.close()
                return
            del self.buffer[: end + 4]
            self.upgraded = True
            self.transport.write(self.join)
        # The welcome is the first frame after a join.
        if b'{"type":"welcome"' in self.buffer:
            self.buffer = bytearray()
            self.welcomed.set_result(True)

    def type(self):
        self.sent += 1
        self.transport.write(STOP_TYPING if self.sent % 5 == 0 else TYPING)

    def close(self):
        if self.transport is not None:
            self.transport.abort()


async def storm(typers, seconds):
    """Every typer sends TYPING_PER_SECOND signals a second, spread evenly."""
    ticks = 10
    tick = 1 / TYPING_PER_SECOND / ticks
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        for typer in typers[index % ticks :: ticks]:
            if not typer.transport.is_closing():
                typer.type()
        index += 1
        # A little longer than the exact period: the budget is never overdrawn.
        await asyncio.sleep(tick * 1.05)


async def every_message(client):
    async with client.changed:
        await client.changed.wait_for(
            lambda: len(client.of_type("message")) >= MESSAGES
        )


@pytest.fixture
def cluster(database, tmp_path, _collected_static):
    # The core layer, at its default capacity (CHAT_LAYER_CAPACITY).
    with Cluster(
        tmp_path, database, instances=2, env={**static_env(), **FAST_SENDERS}
    ) as cluster:
        yield cluster


@pytest.mark.timeout(120)
async def test_typing_storm_costs_no_message_its_live_delivery(
    cluster, room, database, clients
):
    slug, room_id = room
    a, b = cluster.servers
    alice = await clients("alice", slug, a)
    bob = await clients("bob", slug, b)
    await alice.expect("joined", nickname="bob")

    gate = asyncio.Semaphore(50)
    typers = []

    async def enter(index):
        async with gate:
            server = cluster.servers[index % 2]
            typers.append(await Typer.connect(server, slug, f"typer{index}"))

    try:
        started = time.monotonic()
        await asyncio.gather(*(enter(i) for i in range(TYPERS)))
        joined = time.monotonic() - started
        storming = asyncio.create_task(storm(typers, STORM_SECONDS))
        # The storm is under way before the first message.
        await asyncio.sleep(1.0)
        interval = (STORM_SECONDS - 2.0) / MESSAGES
        for index in range(MESSAGES):
            sender = (alice, bob)[index % 2]
            await sender.say(stamped(f"{sender.nickname}-{index}"))
            await asyncio.sleep(interval)
        await storming
        # Live frames still on their way get a few seconds; what is not there
        # by then was not delivered live.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.gather(every_message(alice), every_message(bob))
    finally:
        for typer in typers:
            typer.close()

    saved = [seq for (seq,) in database.query(
        "SELECT seq FROM chat_message WHERE room_id = %s ORDER BY seq", (room_id,)
    )]  # fmt: skip
    assert len(saved) == MESSAGES
    live = {c.nickname: [f["seq"] for f in c.of_type("message")] for c in (alice, bob)}
    missing = {name: sorted(set(saved) - set(seqs)) for name, seqs in live.items()}
    typing_seen = {c.nickname: len(c.of_type("typing")) for c in (alice, bob)}
    drops = {
        s.name: [line for line in s.log().splitlines() if "dropped=" in line]
        for s in cluster.servers
    }
    print(
        f"\n{TYPERS} typers at {TYPING_PER_SECOND}/s for {STORM_SECONDS:.0f}s "
        f"(joined in {joined:.1f}s), {sum(t.sent for t in typers)} signals sent; "
        f"{MESSAGES} messages, not delivered live: "
        f"{ {name: len(seqs) for name, seqs in missing.items()} }; "
        f"typing frames seen: {typing_seen}; drop lines: "
        f"{ {name: len(lines) for name, lines in drops.items()} }"
    )
    for name, lines in drops.items():
        for line in lines[:5]:
            print(f"  {name}: {line}")
    # Every message came live to both, the sender's own echo included, once.
    assert missing == {"alice": [], "bob": []}
    for client in (alice, bob):
        assert sorted(live[client.nickname]) == saved
        assert client.repeated_frames == 0
    # Nothing but typing was dropped anywhere on the way (chat/drops.py).
    assert [
        line for lines in drops.values() for line in lines if "type=typing" not in line
    ] == []
    # Typing still got through: the storm was coalesced, not silenced.
    assert all(typing_seen.values())
    assert all(server.alive for server in cluster.servers)
    assert not cluster.tracebacks()
