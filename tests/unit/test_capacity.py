"""
The per-process cap on WebSockets (chat/capacity.py), through the whole ASGI
application, and the limits chat/transport.py puts on each server connection.
tests/system/test_memory_bounds.py runs the same against real servers.
"""

import asyncio
import json

import pytest
from django.test import override_settings

from chat import capacity, transport
from tests.conftest import Client

pytestmark = pytest.mark.django_db(transaction=True)


async def refused(client: Client) -> tuple[dict, int]:
    """The frame and close code of a socket turned away."""
    connected, _code = await client.connect()
    assert connected
    frame = json.loads(await client.ws.receive_from())
    closed = await client.ws.receive_output()
    assert closed["type"] == "websocket.close"
    return frame, closed["code"]


@override_settings(CHAT_MAX_CONNECTIONS=2)
async def test_sockets_over_the_cap_are_turned_away_until_one_closes(general) -> None:
    assert capacity.connections.open == 0
    first, second = Client(), Client()
    for client in (first, second):
        assert (await client.connect())[0]
    frame, code = await refused(Client())
    assert frame["type"] == "error"
    assert frame["code"] == "server_full"
    assert frame["message"]
    assert code == 1013
    assert capacity.connections.open == 2

    await first.close()
    third = Client()
    assert (await third.connect())[0]
    assert (await third.join("third"))["type"] == "welcome"
    for client in (second, third):
        await client.close()
    assert capacity.connections.open == 0


async def test_a_place_is_given_back_when_the_application_fails(general) -> None:
    async def failing(scope: dict, receive: object, send: object) -> None:
        raise RuntimeError("boom")

    middleware = transport.SocketMiddleware(failing)
    with pytest.raises(RuntimeError):
        await middleware({"type": "websocket"}, None, None)
    assert capacity.connections.open == 0


def test_the_full_process_says_so_once(caplog) -> None:
    places = capacity.Capacity()
    with override_settings(CHAT_MAX_CONNECTIONS=1):
        assert places.claim()
        assert not places.claim()
        assert not places.claim()
        places.release()
        assert places.claim()
        assert not places.claim()
    assert caplog.text.count("server_full open=1 max=1") == 2


# The server connections' own limits ---------------------------------------------


class FakeAutobahn:
    """What TwistedSocket reads and sets of an autobahn server protocol."""

    STATE_CONNECTING = 0
    STATE_OPEN = 3

    def __init__(self, max_message: int, max_frame: int) -> None:
        self.maxMessagePayloadSize = max_message
        self.maxFramePayloadSize = max_frame
        self.state = self.STATE_CONNECTING
        self.data = b""
        self.received = []
        self.transport = self
        self.aborted = False

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def abortConnection(self) -> None:
        self.aborted = True


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ((1024 * 1024, 1024 * 1024), (65536, 65536)),  # Daphne's defaults
        ((0, 0), (65536, 65536)),  # autobahn's "no limit"
        ((32768, 65536), (32768, 65536)),  # lower already: kept
    ],
)
def test_daphne_limits_are_lowered_to_the_frame_limit(limits, expected) -> None:
    protocol = FakeAutobahn(*limits)
    transport.TwistedSocket(protocol).limit_incoming(65536)
    assert (protocol.maxMessagePayloadSize, protocol.maxFramePayloadSize) == expected


def test_daphne_drops_a_client_that_sends_too_much_before_the_handshake() -> None:
    protocol = FakeAutobahn(0, 0)
    transport.TwistedSocket(protocol).limit_incoming(100)
    protocol.dataReceived(b"x" * 60)
    protocol.data = b"x" * 60  # autobahn keeps it until the handshake is answered
    protocol.dataReceived(b"x" * 60)
    assert protocol.aborted
    assert protocol.received == [b"x" * 60]
    # Once open, frames are autobahn's to limit.
    protocol.aborted = False
    protocol.state = protocol.STATE_OPEN
    protocol.dataReceived(b"x" * 200)
    assert not protocol.aborted


async def test_daphne_stops_reading_while_frames_wait_and_drops_a_flood() -> None:
    class Transport:
        paused = False

        def pauseProducing(self) -> None:
            self.paused = True

        def resumeProducing(self) -> None:
            self.paused = False

    queue = asyncio.Queue()
    protocol = FakeAutobahn(0, 0)
    protocol.transport = Transport()
    protocol.onMessage = lambda payload, is_binary: queue.put_nowait(
        {"type": "websocket.receive", "text": payload.decode()}
    )
    protocol.dropConnection = lambda abort: setattr(protocol, "dropped", abort)
    receive = transport.TwistedSocket(protocol).limit_waiting(queue.get, 3)

    protocol.onMessage(b"1", False)
    assert not protocol.transport.paused
    protocol.onMessage(b"2", False)
    assert protocol.transport.paused
    assert (await receive())["text"] == "1"
    assert protocol.transport.paused  # "2" still waits
    assert (await receive())["text"] == "2"
    assert not protocol.transport.paused

    for n in range(5):
        protocol.onMessage(str(n).encode(), False)
    # The fourth found three waiting: all were let go, the connection dropped.
    assert protocol.dropped is True
    assert queue.qsize() == 1
    assert (await receive())["text"] == "4"
