"""
A view of each WebSocket's own connection, for the two servers the project
supports (Daphne and uvicorn), which ASGI does not give.

What for:

1. How many bytes wait to go out. Neither server bounds it for us: Daphne
   (Twisted) buffers without limit, and uvicorn makes ``send`` wait while its
   buffer is over the high-water mark, which would hold up every other socket of
   the room behind one that stopped reading. A socket whose buffer is past
   CHAT_SEND_BUFFER_BYTES is closed (close code 4408).

2. Writing pre-framed bytes. A frame from the server is the same bytes for every
   recipient (no mask, and no compression on these connections), so the hub
   frames each event once and writes the bytes to every local socket, several
   events in one write when they come together. Through ASGI each recipient costs
   a call chain and its own framing: bench/run.py measured the difference (see
   docs/benchmarks.md). ``deliver`` is the one way to it: the bound, the framing
   and the fall-back to ASGI.

3. How large a message a client may send. The servers' own limits depend on how
   they were started (1 MiB for ``manage.py runserver`` and a plain ``daphne``
   command, 16 MiB for uvicorn without --ws-max-size), and a client may keep a
   message that large, unfinished, in the server's memory. The middleware
   lowers each connection's limit to CHAT_MAX_FRAME_BYTES before the first frame
   is read (``limit_incoming``); a larger message ends the connection (uvicorn
   closes it with 1009, Daphne drops it).

4. How many frames wait to be handled. Daphne reads and queues whatever a
   client sends, however far its consumer is behind; uvicorn stops reading
   while a frame waits, but queues a whole read at once. ``limit_waiting`` has
   Daphne stop reading as uvicorn does, and cuts a client that gets more than
   MAX_WAITING_FRAMES waiting.

5. Writing the HTTP transport's event streams (Daphne only): the same lot of
   events, framed once as a chunk of a chunked response, written to every
   stream's connection (``TwistedStream``, put in the scope as ``stream`` by
   ``StreamMiddleware``); under uvicorn, and where Daphne lacks part of
   TWISTED_REQUEST, streams go through ASGI. Each process logs the path of its
   first stream (``stream path=direct server=daphne ...``).

The middleware puts a ``Socket`` in the scope as ``socket``, or None under any
other server (or the test communicator): then the consumer sends through ASGI
and knows nothing of buffers. It also counts the process's WebSockets
(chat/capacity.py) and turns away those over CHAT_MAX_CONNECTIONS.

The contract
------------
All of this reads attributes the servers do not promise to keep (Twisted's
``_tempDataLen`` and ``_aborting``, autobahn's ``_perMessageCompress``, the
``send`` Daphne and uvicorn hand the application, uvicorn's ``conn``...). What
is read is listed once, below (TWISTED_TRANSPORT, TWISTED_REQUEST,
AUTOBAHN_PROTOCOL, UVICORN_PROTOCOL, WEBSOCKETS_CONNECTION), for the releases in
WRITTEN_FOR:

- each process checks the list against its first socket and logs, once, the
  path its server gives and why (``delivery path=direct server=daphne ...`` or
  ``delivery path=asgi ... reason=...``); a connection whose server lacks part of
  it goes through ASGI, safe but several times slower;
- a socket that falls back on its own (compression negotiated) is counted, and
  the first of each cause is logged (``delivery_fallback``);
- ``contract_problems()`` checks the list against real objects of the installed
  classes; tests/unit/test_transport.py fails on any problem, naming the library,
  its version, the class and the attribute, and tests/system/test_delivery_path.py
  fails when a real Daphne or uvicorn does not deliver directly.
"""

import asyncio
import enum
import functools
import importlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.utils.translation import gettext as _
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from . import capacity, counters
from .protocol import CLOSE_TRY_LATER, SERVER_FULL, encode, error_frame

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# The releases whose internals this module was written against, and checked
# with (tests/unit/test_transport.py, tests/system/test_delivery_path.py).
# Another release may hold to the contract too: contract_problems() says whether
# it does, and the start-up line names any release not listed here.
WRITTEN_FOR = {
    "daphne": "4.2.3",
    "twisted": "26.10.0",
    "autobahn": "26.11.1",
    "uvicorn": "0.54.0",
    "websockets": "17.4",
}
# The libraries whose internals each server's direct path reads.
SERVER_LIBRARIES = {
    "daphne": ("daphne", "twisted", "autobahn"),
    "uvicorn": ("uvicorn", "websockets"),
}

# Deliveries by path (chat/counters.py): written to the socket, or sent through
# the server's ASGI `send` by a socket the server could not be written to.
DIRECT_DELIVERIES = "delivery.direct"
ASGI_DELIVERIES = "delivery.asgi"

# A socket closed for not reading is cut this long after: its close frame waits
# behind the bytes it does not read. Daphne cuts it after a second by itself
# (autobahn's closeHandshakeTimeout); uvicorn's close waits for the buffer to
# drain, which for a stalled client is never, so the connection, its buffers
# and its consumer would stay.
CUT_AFTER_SECONDS = 2.0

# Frames received but not yet taken by the consumer, per socket. Both servers
# stop reading while frames wait (Daphne as paced here), so only frames that
# came in one read pile up: a client that gets more than this many waiting at
# once sends far faster than it is served (tiny frames cost some 250 bytes
# each as Python objects) and is dropped. No client of the chat's sends a
# burst of this size; a bot over its rate is refused long before.
MAX_WAITING_FRAMES = 1000
# What uvicorn's parser is given at a time (it reads up to 256 KiB at once), so
# that a read full of tiny frames is not turned into objects all together.
PARSE_SLICE_BYTES = 4096

logger = logging.getLogger(__name__)


# The contract -------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """Attributes this module reads on one class of a library, with the type
    each must have where the code depends on it (None: any)."""

    library: str
    owner: str
    names: dict[str, type | None] = field(default_factory=dict)

    def problems(self, obj: object) -> list[str]:
        """What `obj` lacks of these, one sentence each."""
        found = []
        for name, kind in self.names.items():
            if not hasattr(obj, name):
                found.append(
                    f"{self.library} {installed(self.library)} {self.owner} "
                    f"has no attribute {name}"
                )
            elif kind is not None and not isinstance(getattr(obj, name), kind):
                found.append(
                    f"{self.library} {installed(self.library)} {self.owner}.{name} "
                    f"is a {type(getattr(obj, name)).__name__}, not a {kind.__name__}"
                )
        return found


# Daphne's connection transport (TwistedSocket: buffered, write, cut_later,
# limit_incoming, limit_waiting).
TWISTED_TRANSPORT = Needs(
    "twisted",
    "tcp.Server",
    {
        "dataBuffer": bytes,
        "offset": int,
        "_tempDataLen": int,
        "connected": None,
        "disconnecting": None,
        "_aborting": None,
        "TLS": None,
        "socket": socket.socket,
        "write": None,
        "abortConnection": None,
        "pauseProducing": None,
        "resumeProducing": None,
    },
)
# Daphne's WebRequest, a twisted.web Request, for an HTTP response streamed in
# chunks (TwistedStream: the HTTP transport's event streams).
TWISTED_REQUEST = Needs(
    "twisted",
    "http.Request",
    {
        "channel": None,
        "chunked": None,
        "startedWriting": None,
        "finished": None,
        "_disconnected": None,
    },
)
# Daphne's WebSocketProtocol, an autobahn WebSocketServerProtocol.
AUTOBAHN_PROTOCOL = Needs(
    "autobahn",
    "WebSocketServerProtocol",
    {
        "transport": None,
        "state": int,
        "STATE_CONNECTING": int,
        "STATE_OPEN": int,
        "_perMessageCompress": None,
        "send_queue": None,
        "data": bytes,
        "maxMessagePayloadSize": int,
        "maxFramePayloadSize": int,
        "dataReceived": None,
        "onMessage": None,
        "dropConnection": None,
        "sendCloseFrame": None,
    },
)
# uvicorn's websockets-sansio protocol (AsyncioSocket); its transport is
# asyncio's, whose methods used here are public.
UVICORN_PROTOCOL = Needs(
    "uvicorn",
    "WebSocketsSansIOProtocol",
    {"transport": None, "conn": None, "queue": asyncio.Queue},
)
# The websockets ServerProtocol that uvicorn keeps as `conn`.
WEBSOCKETS_CONNECTION = Needs(
    "websockets",
    "ServerProtocol",
    {
        "state": State,
        "extensions": list,
        "max_message_size": None,
        "events": list,
        "receive_data": None,
    },
)


@functools.cache
def installed(library: str) -> str:
    """The installed version of `library`, or "missing"."""
    # The package's own __version__, where it has one: importlib.metadata
    # reads the metadata of every installed distribution, about 0.8 MiB a
    # process, taken at the first socket (docs/benchmarks.md).
    try:
        module = importlib.import_module(library)
    except ImportError:
        return "missing"
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    from importlib import metadata

    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return "missing"


def _library_of(obj: object) -> str:
    """The top-level package that defines the class of `obj`."""
    return type(obj).__module__.partition(".")[0]


@dataclass(frozen=True)
class Path:
    """How a connection's deliveries go out, and why."""

    direct: bool
    server: str  # "daphne", "uvicorn", or "unknown"
    reason: str = ""

    def line(self, what: str = "delivery") -> str:
        """The start-up line, for the log: of sockets' deliveries, or of event
        streams (`what`)."""
        parts = [
            what,
            f"path={'direct' if self.direct else 'asgi'}",
            f"server={self.server}",
        ]
        libraries = SERVER_LIBRARIES.get(self.server, ())
        parts += [f"{library}={installed(library)}" for library in libraries]
        untested = [
            f"{library} {installed(library)} (written for {WRITTEN_FOR[library]})"
            for library in libraries
            if installed(library) != WRITTEN_FOR[library]
        ]
        if untested:
            parts.append(f'untested="{", ".join(untested)}"')
        if self.reason:
            parts.append(f'reason="{self.reason}"')
        return " ".join(parts)


def detect(send: Send | None) -> tuple["Socket | None", Path]:
    """The Socket behind an ASGI `send` callable (None where it cannot be
    used), and the path its deliveries take."""
    protocol: Any
    # Daphne hands each connection functools.partial(Server.handle_reply, protocol).
    if isinstance(send, functools.partial) and send.args:
        if _library_of(getattr(send.func, "__self__", None)) == "daphne":
            protocol = send.args[0]
            problems = AUTOBAHN_PROTOCOL.problems(protocol)
            if not problems:
                problems = TWISTED_TRANSPORT.problems(protocol.transport)
            if problems:
                return None, Path(False, "daphne", "; ".join(problems))
            return TwistedSocket(protocol), Path(True, "daphne")
    # uvicorn's send is a bound method of its protocol, which holds the transport.
    protocol = getattr(send, "__self__", None)
    if _library_of(protocol) == "uvicorn":
        if not hasattr(getattr(protocol, "transport", None), "get_write_buffer_size"):
            return None, Path(False, "uvicorn", "no asyncio transport in the protocol")
        if not type(protocol).__module__.endswith(".websockets_sansio_impl"):
            # The other implementations (--ws websockets, wsproto) keep their
            # connection state elsewhere: their sockets get the buffer bound
            # and their own message limit only.
            reason = (
                f"uvicorn's {type(protocol).__name__} is not written to directly; "
                "--ws websockets-sansio is"
            )
        else:
            problems = UVICORN_PROTOCOL.problems(protocol)
            if not problems:
                problems = WEBSOCKETS_CONNECTION.problems(protocol.conn)
            reason = "; ".join(problems)
        if reason:
            # The buffer bound holds still (asyncio's transport is public).
            sock = AsyncioSocket(protocol, asgi_because=reason)
            return sock, Path(False, "uvicorn", reason)
        return AsyncioSocket(protocol), Path(True, "uvicorn")
    kind = type(getattr(send, "__self__", send)).__qualname__
    return None, Path(False, "unknown", f"send of a {kind}, not Daphne's or uvicorn's")


def socket_for(send: Send | None) -> "Socket | None":
    """The Socket behind an ASGI `send` callable, or None for an unknown server."""
    return detect(send)[0]


_reported = False


def report_path(path: Path) -> None:
    """Log the process's delivery path, the first time only (its first socket)."""
    global _reported
    if _reported:
        return
    _reported = True
    logger.log(logging.INFO if path.direct else logging.WARNING, "%s", path.line())


_fallbacks_logged: set[str] = set()


def _fall_back(server: str, reason: str) -> bool:
    """A delivery through ASGI by a socket of a server that is written to
    directly: counted, the first of each cause logged. False, for writable()."""
    counters.add_on_loop(ASGI_DELIVERIES)
    if reason not in _fallbacks_logged:
        _fallbacks_logged.add(reason)
        logger.warning('delivery_fallback server=%s reason="%s"', server, reason)
    return False


def loopback_pair() -> tuple[socket.socket, socket.socket]:
    """Both ends of a TCP connection on 127.0.0.1 (the server's end first)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _address = listener.accept()
    return ours, theirs


def _probe_daphne() -> list[str]:
    """The contract checked on a Daphne connection made the way Daphne makes
    one (its factory, its protocol, a Twisted TCP transport on a socket pair),
    and on the `send` and `receive` its Server hands the application."""
    import daphne.server  # noqa: F401 - first: it installs Daphne's reactor
    from daphne.server import Server
    from daphne.ws_protocol import WebSocketFactory
    from twisted.internet import tcp
    from twisted.internet.testing import MemoryReactorClock, StringTransport
    from twisted.web.http import HTTPChannel, Request

    # A reactor that records what is asked of it, and runs nothing.
    reactor: Any = MemoryReactorClock()
    factory = WebSocketFactory(None, server="daphne", reactor=reactor)
    # No timer of autobahn's is started (they would go to the global reactor).
    factory.setProtocolOptions(openHandshakeTimeout=0)
    protocol = factory.buildProtocol(None)
    ours, theirs = loopback_pair()
    try:
        peer = theirs.getsockname()
        port: Any = None  # a connection accepted by no listening port
        connection = tcp.Server(ours, protocol, peer, port, 1, reactor)
        protocol.makeConnection(connection)
        problems = AUTOBAHN_PROTOCOL.problems(protocol)
        problems += TWISTED_TRANSPORT.problems(connection)
        # The HTTP response an event stream writes to (TwistedStream): the
        # attributes are Twisted's Request's, which Daphne's WebRequest extends.
        channel: Any = HTTPChannel()
        channel.transport = StringTransport()
        problems += TWISTED_REQUEST.problems(Request(channel))
        handed = {}

        def application(**kwargs: Any) -> Awaitable[None]:
            handed.update(kwargs)
            return asyncio.sleep(0)

        server = Server(application, endpoints=["tcp:port=0"], signal_handlers=False)
        server.connections = {protocol: {}}
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(_created(server, protocol))
        finally:
            loop.close()
        send, receive = handed.get("send"), handed.get("receive")
        _found, path = detect(send)
        if not path.direct and not problems:
            problems.append(
                f"daphne {installed('daphne')} Server.create_application hands the "
                f"application a send that is not written to directly: {path.reason}"
            )
        if not isinstance(getattr(receive, "__self__", None), asyncio.Queue):
            problems.append(
                f"daphne {installed('daphne')} Server.create_application hands the "
                "application a receive that is not an asyncio.Queue's get"
            )
        return problems
    finally:
        ours.close()
        theirs.close()


async def _created(server: Any, protocol: object) -> None:
    """Have Daphne's server create the application for `protocol`, and let it end."""
    server.create_application(protocol, {"type": "websocket"})
    await server.connections[protocol]["application_instance"]


def _probe_uvicorn() -> list[str]:
    """The contract checked on uvicorn's websockets-sansio protocol, made as
    uvicorn makes it for `--ws websockets-sansio --ws-per-message-deflate false`."""
    from uvicorn.config import Config
    from uvicorn.protocols.websockets.websockets_sansio_impl import (
        WebSocketsSansIOProtocol,
    )
    from uvicorn.server import ServerState

    async def application(scope: dict, receive: Receive, send: Send) -> None:
        pass

    config = Config(
        app=application,
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        lifespan="off",
        log_config=None,
    )
    config.load()
    loop = asyncio.new_event_loop()
    try:
        protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=loop)
    finally:
        loop.close()
    problems = UVICORN_PROTOCOL.problems(protocol)
    problems += WEBSOCKETS_CONNECTION.problems(getattr(protocol, "conn", None))
    if getattr(getattr(protocol, "send", None), "__self__", None) is not protocol:
        problems.append(
            f"uvicorn {installed('uvicorn')} WebSocketsSansIOProtocol.send is not "
            "a method of the protocol"
        )
    return problems


def contract_problems() -> list[str]:
    """
    What the installed Daphne, Twisted, autobahn, uvicorn and websockets lack of
    what this module reads, checked on real objects of their classes; empty
    while the direct path holds. Each problem names the library, its version,
    the class and the attribute. Not from a running event loop (Daphne's part
    runs one of its own).
    """
    problems = []
    for probe in (_probe_daphne, _probe_uvicorn):
        try:
            problems += probe()
        except Exception as exc:  # noqa: BLE001 - the probe's failure is the finding
            problems.append(f"{probe.__name__} failed: {type(exc).__name__}: {exc}")
    return problems


# Framing and delivery -----------------------------------------------------


class Outgoing(Protocol):
    """One event as a socket is sent it: its ASGI message, and the same as a
    server's frame."""

    @property
    def message(self) -> dict[str, Any]: ...

    @property
    def data(self) -> bytes: ...


class Framed(Protocol):
    """Events already framed together (the hub's Batch)."""

    @property
    def data(self) -> bytes: ...


def text_frame(text: str) -> bytes:
    """One unmasked, uncompressed text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def frames(events: Iterable[Outgoing]) -> bytes:
    """Events as the bytes of their frames, one after the other."""
    return b"".join(event.data for event in events)


class Delivery(enum.StrEnum):
    """How deliver() sent, or did not send, a socket its events."""

    DIRECT = "direct"
    ASGI = "asgi"
    # Nothing sent: more than the bound waits to go out; the caller closes it.
    TOO_SLOW = "too_slow"


async def deliver(
    sock: "Socket | None",
    send: Send,
    events: Sequence[Outgoing],
    *,
    limit: int,
    framed: Framed | None = None,
) -> Delivery:
    """
    Send one socket its events: the frames written straight to it where its
    server allows, each event's ASGI message through `send` otherwise. `framed`
    is the same events framed together, when they were (taken only to write).
    A Delivery; whatever `send` raises is raised.
    """
    if sock is not None and sock.buffered() > limit:
        return Delivery.TOO_SLOW
    if sock is not None and sock.writable():
        sock.write(framed.data if framed is not None else frames(events))
        return Delivery.DIRECT
    if sock is None:
        counters.add_on_loop(ASGI_DELIVERIES)
    for event in events:
        await send(event.message)
    return Delivery.ASGI


def chunk(data: bytes) -> bytes:
    """Bytes as one chunk of a chunked HTTP/1.1 response body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class TwistedStream:
    """
    Daphne: an event stream's response, written to its TCP connection
    directly, in chunks framed once for every stream (the hub's Batch), as
    sockets get their frames. Through ASGI each stream's delivery cost its
    own call chain and framing: about four times a socket's CPU per delivery
    at 1000 participants (docs/benchmarks.md).
    """

    def __init__(self, request: Any) -> None:
        self.request = request
        self.socket = TwistedSocket(request.channel)

    def writable(self) -> bool:
        """Whether a chunk may be written now: the response has begun (its
        headers went out) in chunked form, and has not ended."""
        request = self.request
        return bool(
            request.chunked
            and request.startedWriting
            and not request.finished
            and not request._disconnected
            and request.channel is not None
        )

    def buffered(self) -> int:
        return self.socket.buffered()

    def write(self, framed: bytes) -> None:
        self.socket.write(framed)

    def cut_later(self) -> None:
        self.socket.cut_later()


def detect_stream(send: Send | None) -> tuple[TwistedStream | None, Path]:
    """The response behind an HTTP `send` callable, written to directly where
    the server is Daphne and has all the contract asks (None otherwise: the
    stream goes through ASGI), and the path its events take."""
    if not isinstance(send, functools.partial) or not send.args:
        kind = type(getattr(send, "__self__", send)).__qualname__
        return None, Path(False, "unknown", f"send of a {kind}, not Daphne's")
    if _library_of(getattr(send.func, "__self__", None)) != "daphne":
        return None, Path(False, "unknown", "not Daphne's send")
    request = send.args[0]
    problems = TWISTED_REQUEST.problems(request)
    if not problems:
        problems = TWISTED_TRANSPORT.problems(
            getattr(request.channel, "transport", None)
        )
    if problems:
        return None, Path(False, "daphne", "; ".join(problems))
    return TwistedStream(request), Path(True, "daphne")


_stream_path_reported = False


def stream_for(send: Send | None) -> TwistedStream | None:
    """detect_stream()'s stream; the process logs its path once, at its first
    event stream (``stream path=direct server=daphne ...``)."""
    global _stream_path_reported
    found, path = detect_stream(send)
    if not _stream_path_reported:
        _stream_path_reported = True
        logger.log(
            logging.INFO if path.direct else logging.WARNING,
            "%s",
            path.line("stream"),
        )
    return found


class TwistedSocket:
    """Daphne: an autobahn protocol over a Twisted TCP transport."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.transport = protocol.transport

    def buffered(self) -> int:
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def writable(self) -> bool:
        """Whether a delivery may be written now; False: through ASGI."""
        protocol = self.protocol
        if protocol.state != protocol.STATE_OPEN:
            return False  # closing: its disconnect follows
        if protocol._perMessageCompress is not None:
            # Daphne does not accept the extension; a subclass might.
            return _fall_back("daphne", "per-message compression negotiated")
        if protocol.send_queue:
            # Frames autobahn queued to send later (Daphne never has it queue):
            # a write now would go out ahead of them.
            return _fall_back("daphne", "autobahn's send queue is not empty")
        return True

    def write(self, data: bytes) -> None:
        counters.add_on_loop(DIRECT_DELIVERIES)
        # Twisted queues every write for the reactor's next round: the socket
        # is registered for writing, written, and unregistered (two epoll
        # changes and Twisted's logging and context wrappers around each). At
        # 1000 clients that was about half of a Daphne process's CPU (py-spy).
        # When nothing is queued ahead, send at once, as asyncio's transports
        # do, and leave only what the kernel did not take to Twisted: Daphne at
        # 1000 clients went from 0.046-0.057 to 0.018 server CPU-s per 1000
        # deliveries (bench/run.py, docs/benchmarks.md).
        transport = self.transport
        if (
            transport.connected
            and not transport.disconnecting
            and not transport._aborting
            and not transport.TLS
            and not self.buffered()
        ):
            try:
                sent = transport.socket.send(data)
            except OSError:
                sent = 0  # full, or broken: Twisted's write deals with it
            data = data[sent:]
        if data:
            transport.write(data)

    def cut_later(self) -> None:
        cut_later(self.transport.abortConnection)

    def limit_incoming(self, max_bytes: int) -> None:
        """Refuse any message or frame over max_bytes."""
        # autobahn copies the factory's limits (Daphne's
        # --websocket-max-message-size and --websocket-max-frame-size, 1 MiB by
        # default) onto each protocol as its TCP connection is made, and checks
        # the protocol's own attributes as each frame begins
        # (onMessageFrameBegin: from the frame's header, before any of its
        # payload is kept). It parses frames only once the handshake is
        # answered, which waits for the application's accept, so limits set
        # here hold from the first frame. autobahn applies the message limit to
        # what it sends too: the consumer sizes its frames by it
        # (max_send_bytes).
        protocol = self.protocol
        for name in ("maxMessagePayloadSize", "maxFramePayloadSize"):
            # 0 is autobahn's "no limit"; a lower limit of the server's stays.
            if not 0 < getattr(protocol, name) <= max_bytes:
                setattr(protocol, name, max_bytes)
        # Past them autobahn fails the connection (_max_message_size_exceeded,
        # code 1009) and, as a server (failByDrop), drops it at once: the client
        # sees 1006, and nothing of the message is kept.
        #
        # What a client sends before the handshake is answered (RFC 6455 4.1
        # forbids it) waits in protocol.data, unparsed, limited only by
        # Daphne's handshake timeout; past max_bytes the connection is dropped.
        received = protocol.dataReceived

        def data_received(data: bytes) -> None:
            if (
                protocol.state == protocol.STATE_CONNECTING
                and len(protocol.data) + len(data) > max_bytes
            ):
                self.transport.abortConnection()
                return
            received(data)

        protocol.dataReceived = data_received

    async def close(self, send: Send, code: int) -> None:
        """Close with `code`, which may be any valid code."""
        # Daphne closes through autobahn's sendClose, which raises for the
        # standard codes other than 1000 (1011, 1012, 1013); the frame itself
        # takes any.
        self.protocol.sendCloseFrame(code=code, isReply=False)

    def limit_waiting(self, receive: Receive, max_frames: int) -> Receive:
        """
        Stop reading while frames wait for the application, and drop a client
        that gets more than max_frames waiting at once. Returns the `receive`
        to give the application.
        """
        # Daphne puts every message autobahn parses into the application's
        # queue (WebSocketProtocol.onMessage) and never stops reading: a client
        # sending faster than its consumer answers grew that queue without end
        # (300,000 tiny frames: +77 MiB). uvicorn stops reading while a message
        # waits; the same is done here with the transport's pauseProducing.
        queue = getattr(receive, "__self__", None)
        if not isinstance(queue, asyncio.Queue):
            return receive
        protocol = self.protocol
        transport = self.transport
        on_message = protocol.onMessage
        paused = False

        def on_message_paced(payload: bytes, is_binary: bool) -> None:
            nonlocal paused
            if queue.qsize() >= max_frames:
                # Closed for autobahn at once, which then parses nothing more
                # of the read (consumeData stops at STATE_CLOSED).
                _flooded(queue, queue.qsize())
                protocol.dropConnection(abort=True)
                return
            on_message(payload, is_binary)
            if not paused and queue.qsize() > 1:
                paused = True
                transport.pauseProducing()

        async def receive_paced() -> dict[str, Any]:
            nonlocal paused
            message = await receive()
            if paused and queue.empty():
                paused = False
                transport.resumeProducing()
            return message

        protocol.onMessage = on_message_paced
        return receive_paced

    def max_send_bytes(self) -> int | None:
        # autobahn refuses to send a message over its maxMessagePayloadSize
        # (Daphne's --websocket-max-message-size, which also bounds what it
        # receives); 0 means no limit.
        return self.protocol.maxMessagePayloadSize or None


class AsyncioSocket:
    """uvicorn: a protocol over an asyncio transport."""

    def __init__(self, protocol: Any, *, asgi_because: str = "") -> None:
        self.protocol = protocol
        self.transport = protocol.transport
        # Let uvicorn's own send wait only well past the point where the
        # consumer has closed the socket, so no send stalls the fan-out.
        self.transport.set_write_buffer_limits(high=settings.CHAT_SEND_BUFFER_BYTES * 4)
        # The sans-I/O implementation exposes its connection state; the others
        # (and one that no longer holds to the contract: detect()) only get the
        # buffer check, and deliveries through ASGI `asgi_because`.
        self.asgi_because = asgi_because
        self.connection = None if asgi_because else protocol.conn

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def writable(self) -> bool:
        """Whether a delivery may be written now; False: through ASGI."""
        connection = self.connection
        if connection is None:
            return _fall_back("uvicorn", self.asgi_because)
        if connection.state is not State.OPEN or self.transport.is_closing():
            return False  # closing: its disconnect follows
        if connection.extensions:
            return _fall_back(
                "uvicorn",
                "per-message compression negotiated "
                "(--ws-per-message-deflate false keeps it off)",
            )
        return True

    def write(self, data: bytes) -> None:
        counters.add_on_loop(DIRECT_DELIVERIES)
        self.transport.write(data)

    def max_send_bytes(self) -> int | None:
        # uvicorn's --ws-max-size bounds only what it receives.
        return None

    def cut_later(self) -> None:
        cut_later(self._cut)

    def limit_incoming(self, max_bytes: int) -> None:
        """Refuse any message over max_bytes (close code 1009)."""
        protocol = self.protocol
        connection: Any = getattr(protocol, "conn", None)
        if hasattr(connection, "max_message_size"):
            # The sans-I/O implementation, over websockets' ServerProtocol: its
            # parser takes max_message_size as each frame starts (Protocol.parse
            # passes what is left of it to Frame.parse, which checks the
            # header's length before reading the payload), so a fragmented
            # message counts as a whole. uvicorn starts the application (a task)
            # as soon as the request is parsed, and this runs before the next
            # read: no frame has begun. (Bytes that came in the same read as the
            # request never reach the parser: uvicorn's HTTP protocol hands it
            # the request alone.) A larger message is refused with 1009.
            if not 0 < (connection.max_message_size or 0) <= max_bytes:
                connection.max_message_size = max_bytes
        elif hasattr(protocol, "max_size"):
            # The legacy implementation reads its own max_size as each message
            # starts, and reads no frame before the handshake is complete.
            if not 0 < (protocol.max_size or 0) <= max_bytes:
                protocol.max_size = max_bytes

    async def close(self, send: Send, code: int) -> None:
        """Close with `code`, which may be any valid code."""
        await send({"type": "websocket.close", "code": code})

    def limit_waiting(self, receive: Receive, max_frames: int) -> Receive:
        """
        Drop a client that gets more than max_frames waiting for the
        application at once. Returns the `receive` to give the application.
        """
        # uvicorn stops reading while a message waits, but turns a whole read
        # (up to 256 KiB) into messages at once: 300,000 tiny frames grew it by
        # 18 MiB. The sans-I/O parser is given the read a slice at a time here,
        # and the connection is cut once too many frames wait. The legacy
        # implementation keeps at most max_queue (32) messages by itself.
        protocol = self.protocol
        connection: Any = getattr(protocol, "conn", None)
        queue = getattr(protocol, "queue", None)
        if not (
            isinstance(getattr(connection, "events", None), list)
            and isinstance(queue, asyncio.Queue)
        ):
            return receive
        receive_data = connection.receive_data

        def receive_data_sliced(data: bytes) -> None:
            view = memoryview(data)
            for start in range(0, len(view), PARSE_SLICE_BYTES):
                receive_data(view[start : start + PARSE_SLICE_BYTES])
                waiting = len(connection.events) + queue.qsize()
                if waiting > max_frames:
                    # Parsed but not yet handed over; the rest is not parsed.
                    connection.events.clear()
                    _flooded(queue, waiting)
                    self._cut()
                    return

        connection.receive_data = receive_data_sliced
        return receive

    def _cut(self) -> None:
        if self.transport.is_closing() and not self.transport.get_write_buffer_size():
            return  # closed, and nothing left stuck in it
        # Closed without lingering, the connection is reset and the kernel drops
        # what it still holds for it, as Twisted's abortConnection does; after a
        # plain abort the kernel would go on offering it to the stalled client
        # for minutes.
        self.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.transport.abort()


Socket = TwistedSocket | AsyncioSocket


def cut_later(abort: Callable[[], object]) -> None:
    """Drop the connection, unsent bytes and all, unless it closed by then."""
    asyncio.get_running_loop().call_later(CUT_AFTER_SECONDS, abort)


def _flooded(queue: asyncio.Queue, waiting: int) -> None:
    """Let go of the frames a flooding client has waiting: its consumer gets
    the disconnect next, rather than answering them into a closed socket."""
    logger.warning("too_many_waiting waiting=%d", waiting)
    kept = []
    while not queue.empty():
        message = queue.get_nowait()
        if message.get("type") != "websocket.receive":
            kept.append(message)
    for message in kept:
        queue.put_nowait(message)


class SocketMiddleware:
    def __init__(self, inner: Callable[..., Awaitable[None]]) -> None:
        self.inner = inner

    async def __call__(
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        sock, path = detect(send)
        report_path(path)
        if sock is not None:
            # Now, before the handshake is answered: no frame has been read.
            sock.limit_incoming(settings.CHAT_MAX_FRAME_BYTES)
            receive = sock.limit_waiting(receive, MAX_WAITING_FRAMES)
        if not capacity.connections.claim():
            return await refuse_full(sock, receive, send)
        try:
            return await self.inner(dict(scope, socket=sock), receive, send)
        finally:
            # The application is done with the socket (closed, or cancelled by
            # the server): its place is free.
            capacity.connections.release()


class StreamMiddleware:
    """
    Outermost for HTTP, as SocketMiddleware is for WebSockets, so that it sees
    the server's own send: the HTTP transport's requests get their response's
    TwistedStream (or None) in the scope as ``stream``.
    """

    def __init__(self, inner: Callable[..., Awaitable[None]]) -> None:
        self.inner = inner

    async def __call__(
        self, scope: dict[str, Any], receive: Receive, send: Send
    ) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/http/"):
            scope = dict(scope, stream=stream_for(send))
        return await self.inner(scope, receive, send)


async def refuse_full(sock: Socket | None, receive: Receive, send: Send) -> None:
    """
    Turn a socket away before anything is done for it (no session, no database),
    with an error frame that says why and 1013, "try again later": the page
    reconnects with its usual backoff, perhaps to another instance.
    """
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # gone already
    await send({"type": "websocket.accept"})
    frame = error_frame(
        SERVER_FULL, _("This chat server is full just now; try again shortly.")
    )
    await send({"type": "websocket.send", "text": encode(frame)})
    if sock is not None:
        await sock.close(send, CLOSE_TRY_LATER)
    else:
        await send({"type": "websocket.close", "code": CLOSE_TRY_LATER})
