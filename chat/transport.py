"""
A view of each WebSocket's own connection, for the two servers the project
supports (Daphne and uvicorn), which ASGI does not give.

What for:

1. How many bytes wait to go out. Neither server bounds it for us: Daphne
   (Twisted) buffers without limit, and uvicorn makes ``send`` wait while its
   buffer is over the high-water mark, which would hold up every other socket of
   the room behind one that stopped reading. The consumer closes a socket whose
   buffer is past CHAT_SEND_BUFFER_BYTES (close code 4408).

2. Writing pre-framed bytes. A frame from the server is the same bytes for every
   recipient (no mask, and no compression on these connections), so the hub
   frames each event once and writes the bytes to every local socket, several
   events in one write when they come together. Through ASGI each recipient costs
   a call chain and its own framing: bench/run.py measured the difference (see
   docs/benchmarks.md).

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

The middleware puts a ``Socket`` in the scope as ``socket``, or None under any
other server (or the test communicator): then the consumer sends through ASGI
and knows nothing of buffers. It also counts the process's WebSockets
(chat/capacity.py) and turns away those over CHAT_MAX_CONNECTIONS.
"""

import asyncio
import functools
import logging
import socket
import struct
from collections.abc import Callable

from django.conf import settings
from django.utils.translation import gettext as _
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from . import capacity
from .protocol import CLOSE_TRY_LATER, SERVER_FULL, encode, error_frame

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


def text_frame(text):
    """One unmasked, uncompressed text frame, as a server sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class TwistedSocket:
    """Daphne: an autobahn protocol over a Twisted TCP transport."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport

    def buffered(self):
        transport = self.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def writable(self):
        # Open, no per-message compression negotiated, and nothing of autobahn's
        # own queued ahead (Daphne never queues; checked so order is kept).
        protocol = self.protocol
        return (
            protocol.state == protocol.STATE_OPEN
            and protocol._perMessageCompress is None
            and not protocol.send_queue
        )

    def write(self, data):
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

    def cut_later(self):
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

    async def close(self, send: Callable, code: int) -> None:
        """Close with `code`, which may be any valid code."""
        # Daphne closes through autobahn's sendClose, which raises for the
        # standard codes other than 1000 (1011, 1012, 1013); the frame itself
        # takes any.
        self.protocol.sendCloseFrame(code=code, isReply=False)

    def limit_waiting(self, receive: Callable, max_frames: int) -> Callable:
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

        async def receive_paced() -> dict:
            nonlocal paused
            message = await receive()
            if paused and queue.empty():
                paused = False
                transport.resumeProducing()
            return message

        protocol.onMessage = on_message_paced
        return receive_paced

    def max_send_bytes(self):
        # autobahn refuses to send a message over its maxMessagePayloadSize
        # (Daphne's --websocket-max-message-size, which also bounds what it
        # receives); 0 means no limit.
        return self.protocol.maxMessagePayloadSize or None


class AsyncioSocket:
    """uvicorn: a protocol over an asyncio transport."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport
        # Let uvicorn's own send wait only well past the point where the
        # consumer has closed the socket, so no send stalls the fan-out.
        self.transport.set_write_buffer_limits(high=settings.CHAT_SEND_BUFFER_BYTES * 4)
        # The sans-I/O implementation exposes its connection state; the others
        # only get the buffer check.
        self.connection = getattr(protocol, "conn", None)
        if not hasattr(self.connection, "extensions"):
            self.connection = None

    def buffered(self):
        return self.transport.get_write_buffer_size()

    def writable(self):
        connection = self.connection
        return (
            connection is not None
            and connection.state is State.OPEN
            and not connection.extensions
            and not self.transport.is_closing()
        )

    def write(self, data):
        self.transport.write(data)

    def max_send_bytes(self):
        # uvicorn's --ws-max-size bounds only what it receives.
        return None

    def cut_later(self):
        cut_later(self._cut)

    def limit_incoming(self, max_bytes: int) -> None:
        """Refuse any message over max_bytes (close code 1009)."""
        protocol = self.protocol
        connection = getattr(protocol, "conn", None)
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

    async def close(self, send: Callable, code: int) -> None:
        """Close with `code`, which may be any valid code."""
        await send({"type": "websocket.close", "code": code})

    def limit_waiting(self, receive: Callable, max_frames: int) -> Callable:
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
        connection = getattr(protocol, "conn", None)
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

    def _cut(self):
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


def cut_later(abort):
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


def socket_for(send):
    """The Socket behind an ASGI `send` callable, or None for an unknown server."""
    # Daphne hands each connection functools.partial(Server.handle_reply, protocol).
    if isinstance(send, functools.partial) and send.args:
        protocol = send.args[0]
        transport = getattr(protocol, "transport", None)
        if hasattr(transport, "dataBuffer") and hasattr(protocol, "send_queue"):
            return TwistedSocket(protocol)
    # uvicorn's send is a bound method of its protocol, which holds the transport.
    protocol = getattr(send, "__self__", None)
    if hasattr(getattr(protocol, "transport", None), "get_write_buffer_size"):
        return AsyncioSocket(protocol)
    return None


class SocketMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "websocket":
            return await self.inner(scope, receive, send)
        sock = socket_for(send)
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


async def refuse_full(
    sock: TwistedSocket | AsyncioSocket | None, receive: Callable, send: Callable
) -> None:
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
