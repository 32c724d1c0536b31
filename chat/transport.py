"""
How many bytes a WebSocket has waiting to go out on the network.

ASGI gives an application no view of this, and neither supported server bounds it
for us: Daphne (Twisted) buffers without limit, and uvicorn makes ``send`` wait
while its buffer is over the high-water mark, which would hold up every other
socket of the room behind one that stopped reading. So a client that stops
reading (a dead network, a stuck bot) would either grow the server's memory or
slow everybody down.

This middleware reads the figure from the server's own transport, for the two
servers the project supports, and puts a function returning it in the scope as
``send_buffer``; the consumer disconnects a socket whose buffer is past
CHAT_SEND_BUFFER_BYTES (close code 4408). Under another server (or the test
communicator) the function is missing and nothing is refused.
"""

import functools

from django.conf import settings


def _daphne_transport(send):
    # Daphne hands each connection functools.partial(Server.handle_reply, protocol).
    if isinstance(send, functools.partial) and send.args:
        transport = getattr(send.args[0], "transport", None)
        if hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"):
            return transport
    return None


def _asyncio_transport(send):
    # uvicorn's send is a bound method of its protocol, which holds the transport.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if hasattr(transport, "get_write_buffer_size"):
        return transport
    return None


def send_buffer_probe(send):
    """A function returning the bytes buffered for the socket behind `send`, or None."""
    twisted = _daphne_transport(send)
    if twisted is not None:
        return lambda: (
            len(twisted.dataBuffer) - twisted.offset + twisted._tempDataLen
        )
    transport = _asyncio_transport(send)
    if transport is not None:
        # Let uvicorn's send wait only past the point where the consumer has
        # already disconnected the socket, so a send never stalls the fan-out.
        transport.set_write_buffer_limits(high=settings.CHAT_SEND_BUFFER_BYTES * 4)
        return transport.get_write_buffer_size
    return None


class SendBufferMiddleware:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            scope = dict(scope, send_buffer=send_buffer_probe(send))
        return await self.inner(scope, receive, send)
