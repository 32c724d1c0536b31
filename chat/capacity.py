"""
How many WebSockets this process holds, against CHAT_MAX_CONNECTIONS.

Each socket may make the process hold up to CHAT_MAX_FRAME_BYTES of a message
it is still receiving and CHAT_SEND_BUFFER_BYTES of frames it does not read
(chat/transport.py), besides its own objects; the cap on their number bounds the
sum. chat.transport.SocketMiddleware claims a place for each socket before
anything else runs for it (the origin check, the session, the consumer) and
turns away those over the cap with ``server_full`` and close code 1013.

Counted on the event loop's thread only, as every ASGI call of the process is.
"""

import logging

from django.conf import settings

logger = logging.getLogger(__name__)


class Capacity:
    """Open WebSockets of this process, up to a maximum."""

    def __init__(self) -> None:
        self.open = 0
        # Said once each time the process fills up, not for every refusal.
        self.full = False

    def claim(self) -> bool:
        """Take a place for a new socket; False when there is none."""
        # Read at each call, so that a changed setting (in tests) applies.
        limit = settings.CHAT_MAX_CONNECTIONS
        if self.open >= limit:
            if not self.full:
                self.full = True
                logger.warning("server_full open=%d max=%d", self.open, limit)
            return False
        self.open += 1
        return True

    def release(self) -> None:
        """Give back the place of a socket whose application has finished."""
        self.open -= 1
        self.full = False


connections = Capacity()
