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

The middleware puts a ``Socket`` in the scope as ``socket``, or None under any
other server (or the test communicator): then the consumer sends through ASGI
and knows nothing of buffers.
"""

import asyncio
import functools
import socket
import struct

from django.conf import settings
from websockets.frames import Frame, Opcode
from websockets.protocol import State

# A socket closed for not reading is cut this long after: its close frame waits
# behind the bytes it does not read. Daphne cuts it after a second by itself
# (autobahn's closeHandshakeTimeout); uvicorn's close waits for the buffer to
# drain, which for a stalled client is never, so the connection, its buffers
# and its consumer would stay.
CUT_AFTER_SECONDS = 2.0


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

    def cut_later(self):
        cut_later(self._cut)

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
        if scope["type"] == "websocket":
            scope = dict(scope, socket=socket_for(send))
        return await self.inner(scope, receive, send)
