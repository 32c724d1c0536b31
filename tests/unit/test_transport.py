"""
The direct path to the sockets (chat/transport.py), on real connections of the
installed Daphne (its factory and protocol, over a Twisted TCP transport) and
uvicorn (its websockets-sansio protocol, over an asyncio transport), each on a
loopback TCP connection whose far end is a websockets client: an upgrade that
renames what the module reads fails here, by name.
"""

import asyncio
import importlib.metadata
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from daphne.server import Server  # first: it installs Daphne's reactor
from daphne.ws_protocol import WebSocketFactory
from twisted.internet import tcp
from twisted.internet.testing import MemoryReactorClock
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import (
    WebSocketsSansIOProtocol,
)
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from chat import counters, transport
from chat.transport import AsyncioSocket, Delivery, TwistedSocket, text_frame

ANYWHERE = "ws://127.0.0.1/ws/rooms/general/"


@pytest.fixture(autouse=True)
def _fresh_counts() -> Iterator[None]:
    counters.reset()
    transport._fallbacks_logged.clear()
    yield
    transport._fallbacks_logged.clear()


class Peer:
    """The client end of a connection: a websockets client over a socket."""

    def __init__(self, sock: socket.socket, *, compress: bool = False) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        extensions = [ClientPerMessageDeflateFactory()] if compress else None
        self.client = ClientProtocol(parse_uri(ANYWHERE), extensions=extensions)
        self.client.send_request(self.client.connect())
        self.handshake = b"".join(self.client.data_to_send())
        self.response: Response | None = None

    def raw(self) -> bytes:
        """Whatever has arrived."""
        chunks = []
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def frames(self, data: bytes | None = None) -> list[Frame]:
        """The frames in what has arrived (or in `data`), after the response."""
        self.client.receive_data(self.raw() if data is None else data)
        found = []
        for event in self.client.events_received():
            if isinstance(event, Response):
                self.response = event
            else:
                found.append(event)
        return found

    def texts(self, data: bytes | None = None) -> list[str]:
        return [f.data.decode() for f in self.frames(data) if f.opcode is Opcode.TEXT]


async def eventually(check: Callable[[], Any], timeout: float = 5) -> Any:
    """check()'s first true value, polled on the running loop."""
    async with asyncio.timeout(timeout):
        while not (value := check()):  # noqa: ASYNC110 - nothing to wait on
            await asyncio.sleep(0.005)
    return value


class Handed:
    """What a server handed the application, and a way to end it."""

    def __init__(self) -> None:
        self.send: Any = None
        self.receive: Any = None
        self.done = asyncio.Event()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.send, self.receive = send, receive
        await self.done.wait()


class DaphneConnection:
    """A Daphne WebSocket, made as Daphne makes one, accepted and open."""

    def __init__(self, peer: Peer, protocol: Any, connection: tcp.Server) -> None:
        self.peer = peer
        self.protocol = protocol
        self.connection = connection
        self.reactor: MemoryReactorClock = connection.reactor

    def flush(self) -> None:
        """What Twisted holds, written, as the reactor would."""
        while self.connection.dataBuffer[self.connection.offset :] or (
            self.connection._tempDataLen
        ):
            self.connection.doWrite()


@pytest.fixture
async def daphne() -> AsyncIterator[tuple[DaphneConnection, Handed]]:
    application = Handed()
    server = Server(application, endpoints=["tcp:port=0"], signal_handlers=False)
    server.connections = {}
    reactor = MemoryReactorClock()
    # Daphne's own options (Server.run), without the handshake timer, which
    # autobahn starts on the global reactor.
    server.ws_factory = WebSocketFactory(server, server="daphne", reactor=reactor)
    server.ws_factory.setProtocolOptions(
        autoPingTimeout=server.ping_timeout,
        allowNullOrigin=True,
        openHandshakeTimeout=0,
        maxMessagePayloadSize=server.websocket_max_message_size,
        maxFramePayloadSize=server.websocket_max_frame_size,
    )
    ours, theirs = transport.loopback_pair()
    peer = Peer(theirs)
    protocol = server.ws_factory.buildProtocol(theirs.getsockname())
    protocol._raw_query_string = b""
    connection = tcp.Server(ours, protocol, theirs.getsockname(), None, 1, reactor)
    connection.startReading()
    protocol.makeConnection(connection)
    protocol.dataReceived(peer.handshake)
    await eventually(lambda: application.send)
    await application.send({"type": "websocket.accept"})
    opened = DaphneConnection(peer, protocol, connection)
    opened.flush()
    await eventually(lambda: peer.frames() == [] and peer.response)
    assert peer.response.status_code == 101
    yield opened, application
    application.done.set()
    ours.close()
    theirs.close()


@pytest.fixture
async def uvicorn_factory() -> AsyncIterator[Callable[..., Any]]:
    """Open uvicorn WebSockets: `compress` as --ws-per-message-deflate, and
    whether the client offers it."""
    opened: list[tuple[Any, Handed, socket.socket]] = []

    async def make(*, compress: bool = False) -> tuple[Any, Handed, Peer]:
        application = Handed()
        config = Config(
            app=application,
            ws="websockets-sansio",
            ws_per_message_deflate=compress,
            ws_max_size=65536,
            lifespan="off",
            log_config=None,
        )
        config.load()
        loop = asyncio.get_running_loop()
        ours, theirs = transport.loopback_pair()
        peer = Peer(theirs, compress=compress)
        _transport, protocol = await loop.connect_accepted_socket(
            lambda: WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=loop),
            ours,
        )
        opened.append((protocol, application, theirs))
        theirs.sendall(peer.handshake)
        await eventually(lambda: application.send)
        await application.send({"type": "websocket.accept"})
        await eventually(lambda: peer.frames() == [] and peer.response)
        assert peer.response.status_code == 101
        return protocol, application, peer

    yield make
    for protocol, application, theirs in opened:
        application.done.set()
        protocol.transport.close()
        theirs.close()
    await asyncio.sleep(0)


# The contract -------------------------------------------------------------


def test_the_installed_servers_hold_to_what_the_direct_path_reads() -> None:
    problems = transport.contract_problems()
    assert problems == [], "\n".join(
        ["The direct path to the sockets reads what these releases lack:", *problems]
    )


def test_a_renamed_internal_is_named_with_its_library_and_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if Twisted had renamed it; autobahn sets its own on each connection.
    monkeypatch.delattr(tcp._AbortingMixin, "_aborting")
    made = WebSocketFactory.protocol._connectionMade

    def renamed(self: Any) -> None:
        made(self)
        self._per_message_compress = self.__dict__.pop("_perMessageCompress")

    monkeypatch.setattr(WebSocketFactory.protocol, "_connectionMade", renamed)
    twisted = importlib.metadata.version("twisted")
    autobahn = importlib.metadata.version("autobahn")
    assert transport.contract_problems() == [
        f"autobahn {autobahn} WebSocketServerProtocol has no attribute "
        "_perMessageCompress",
        f"twisted {twisted} tcp.Server has no attribute _aborting",
    ]


# Daphne -------------------------------------------------------------------


async def test_daphne_is_written_to_directly(daphne: tuple) -> None:
    _opened, application = daphne
    sock, path = transport.detect(application.send)
    assert isinstance(sock, TwistedSocket)
    assert path.direct
    versions = " ".join(
        f"{library}={importlib.metadata.version(library)}"
        for library in ("daphne", "twisted", "autobahn")
    )
    assert path.line() == f"delivery path=direct server=daphne {versions}"


async def test_daphne_without_an_internal_goes_through_asgi_and_says_why(
    daphne: tuple,
) -> None:
    opened, application = daphne
    del opened.protocol._perMessageCompress  # as a release that renamed it
    sock, path = transport.detect(application.send)
    assert sock is None
    assert not path.direct
    autobahn = importlib.metadata.version("autobahn")
    assert path.line().endswith(
        f'reason="autobahn {autobahn} WebSocketServerProtocol has no attribute '
        '_perMessageCompress"'
    )
    assert path.line().startswith("delivery path=asgi server=daphne daphne=")


async def test_with_nothing_queued_the_bytes_go_out_at_once(daphne: tuple) -> None:
    opened, application = daphne
    sock = transport.socket_for(application.send)
    assert sock.writable()
    sock.write(text_frame("one") + text_frame("two"))
    assert opened.peer.texts() == ["one", "two"]
    assert sock.buffered() == 0
    assert counters.get(transport.DIRECT_DELIVERIES) == 1


async def test_behind_queued_bytes_they_wait_their_turn(daphne: tuple) -> None:
    opened, application = daphne
    sock = transport.socket_for(application.send)
    opened.connection.write(text_frame("first"))  # queued by Twisted
    sock.write(text_frame("second"))
    assert opened.peer.raw() == b""
    assert sock.buffered() == len(text_frame("first") + text_frame("second"))
    opened.flush()
    assert opened.peer.texts() == ["first", "second"]


async def test_what_the_kernel_does_not_take_is_left_to_twisted(
    daphne: tuple,
) -> None:
    opened, application = daphne
    opened.connection.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    opened.peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock = transport.socket_for(application.send)
    frame = text_frame("x" * (1 << 18))  # far more than the kernel takes at once
    sock.write(frame)
    assert 0 < sock.buffered() < len(frame)
    received = b""
    while len(received) < len(frame):
        received += opened.peer.raw()
        opened.connection.doWrite()
    assert received == frame


@pytest.mark.parametrize("state", ["closing", "aborting"])
async def test_closing_connections_write_through_twisted(
    daphne: tuple, state: str
) -> None:
    opened, application = daphne
    sock = transport.socket_for(application.send)
    if state == "closing":
        opened.connection.loseConnection()
    else:
        opened.connection.abortConnection()
    sock.write(b"frame")
    assert opened.peer.raw() == b""
    assert sock.buffered() == len(b"frame")


async def test_daphne_closes_with_a_code_its_own_close_refuses(daphne: tuple) -> None:
    opened, application = daphne
    sock = transport.socket_for(application.send)
    await sock.close(application.send, 1013)
    opened.flush()
    [frame] = opened.peer.frames()
    assert frame.opcode is Opcode.CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 1013


async def test_daphne_limits_and_paces_what_a_client_sends(daphne: tuple) -> None:
    opened, application = daphne
    sock = transport.socket_for(application.send)
    sock.limit_incoming(65536)
    assert opened.protocol.maxMessagePayloadSize == 65536
    assert opened.protocol.maxFramePayloadSize == 65536
    receive = sock.limit_waiting(application.receive, 3)
    assert (await receive())["type"] == "websocket.connect"
    client = opened.peer.client
    for text in ("1", "2"):
        client.send_text(text.encode())
    opened.protocol.dataReceived(b"".join(client.data_to_send()))
    # Two wait: Daphne stops reading until they are taken.
    assert opened.connection not in opened.reactor.getReaders()
    assert (await receive())["text"] == "1"
    assert (await receive())["text"] == "2"
    assert opened.connection in opened.reactor.getReaders()


# uvicorn ------------------------------------------------------------------


async def test_uvicorn_is_written_to_directly(uvicorn_factory: Callable) -> None:
    _protocol, application, peer = await uvicorn_factory()
    sock, path = transport.detect(application.send)
    assert isinstance(sock, AsyncioSocket)
    assert path.direct
    versions = " ".join(
        f"{library}={importlib.metadata.version(library)}"
        for library in ("uvicorn", "websockets")
    )
    assert path.line() == f"delivery path=direct server=uvicorn {versions}"
    assert sock.writable()
    sock.write(text_frame("one") + text_frame("two"))
    assert await eventually(peer.texts) == ["one", "two"]
    assert counters.get(transport.DIRECT_DELIVERIES) == 1


async def test_uvicorn_without_an_internal_goes_through_asgi_and_says_why(
    uvicorn_factory: Callable,
) -> None:
    protocol, application, _peer = await uvicorn_factory()
    del protocol.conn.extensions  # as a release that renamed it
    sock, path = transport.detect(application.send)
    websockets = importlib.metadata.version("websockets")
    assert not path.direct
    assert path.reason == (
        f"websockets {websockets} ServerProtocol has no attribute extensions"
    )
    # Still bounded: the buffer is asyncio's.
    assert sock.buffered() == 0
    assert not sock.writable()


async def test_a_compressed_socket_falls_back_and_says_so_once(
    uvicorn_factory: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    _protocol, application, peer = await uvicorn_factory(compress=True)
    sock, path = transport.detect(application.send)
    assert path.direct  # the server is; this socket is not
    events = [Event("one"), Event("two")]
    with caplog.at_level(logging.WARNING, "chat.transport"):
        for _ in range(2):
            result = await transport.deliver(sock, application.send, events, limit=1)
            assert result is Delivery.ASGI
    got: list[str] = []
    await eventually(lambda: got.extend(peer.texts()) or len(got) == 4)
    assert got == ["one", "two"] * 2
    assert counters.get(transport.ASGI_DELIVERIES) == 2
    assert [r.getMessage() for r in caplog.records] == [
        'delivery_fallback server=uvicorn reason="per-message compression '
        'negotiated (--ws-per-message-deflate false keeps it off)"'
    ]


async def test_uvicorn_limits_what_a_client_sends(uvicorn_factory: Callable) -> None:
    protocol, application, _peer = await uvicorn_factory()
    sock = transport.socket_for(application.send)
    sock.limit_incoming(1024)
    assert protocol.conn.max_message_size == 1024


# Delivery -----------------------------------------------------------------


class Event:
    """An event as the hub hands it out (chat.hub.Event)."""

    def __init__(self, text: str) -> None:
        self.message = {"type": "websocket.send", "text": text}
        self.data = text_frame(text)


async def test_deliver_writes_the_frames_once_framed(uvicorn_factory: Callable) -> None:
    _protocol, application, peer = await uvicorn_factory()
    sock = transport.socket_for(application.send)

    class Lot:
        data = text_frame("together")

    result = await transport.deliver(
        sock, application.send, [Event("a")], limit=1 << 20, framed=Lot()
    )
    assert result is Delivery.DIRECT
    result = await transport.deliver(sock, application.send, [Event("b")], limit=1)
    assert result is Delivery.DIRECT
    assert await eventually(peer.texts) == ["together", "b"]


async def test_deliver_sends_nothing_past_the_bound(daphne: tuple) -> None:
    opened, application = daphne
    sock = transport.socket_for(application.send)
    opened.connection.write(b"x" * 100)  # waiting in Twisted
    result = await transport.deliver(sock, application.send, [Event("a")], limit=99)
    assert result is Delivery.TOO_SLOW
    assert sock.buffered() == 100


async def test_an_unknown_server_goes_through_asgi() -> None:
    sent = []

    async def send(message: dict) -> None:
        sent.append(message)

    sock, path = transport.detect(send)
    assert sock is None
    assert path.line() == (
        'delivery path=asgi server=unknown reason="send of a function, '
        "not Daphne's or uvicorn's\""
    )
    result = await transport.deliver(sock, send, [Event("a")], limit=1)
    assert result is Delivery.ASGI
    assert sent == [{"type": "websocket.send", "text": "a"}]
    assert counters.get(transport.ASGI_DELIVERIES) == 1


def test_the_path_is_logged_once_per_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(transport, "_reported", False)
    monkeypatch.setitem(transport.WRITTEN_FOR, "twisted", "1.0")
    with caplog.at_level(logging.INFO, "chat.transport"):
        transport.report_path(transport.Path(True, "daphne"))
        transport.report_path(transport.Path(False, "unknown", "again"))
    [line] = [r.getMessage() for r in caplog.records]
    twisted = importlib.metadata.version("twisted")
    assert line.startswith("delivery path=direct server=daphne daphne=")
    assert line.endswith(f'untested="twisted {twisted} (written for 1.0)"')
