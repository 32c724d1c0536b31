"""
What a visitor may do now, whichever transport and instance the request came
by: join (or open a stream), post a message, signal typing. The windows are
the shared ones of chat/limits.py, so a client gains nothing by spreading its
requests over instances, sockets or streams.
"""

import logging

from django.utils.translation import gettext as _

from . import limits, protocol
from .models import Room
from .protocol import ProtocolError
from .services import save_queue

logger = logging.getLogger(__name__)

# Typing signals and pings: a burst, then so many a second. A socket counts its
# own in a bucket of this size (chat/consumers.py); over HTTP they are counted
# per visitor and room in this window. Beyond it they are dropped without a
# word.
SIGNAL_BURST = 10
SIGNAL_RATE = 5
SIGNALS = limits.Window.of("signal", burst=SIGNAL_BURST, per_second=SIGNAL_RATE)


def room_open(room: Room | None, slug: str) -> Room:
    """The room found at `slug`, or why it cannot be joined: there is none
    (`room_not_found`), or it is archived (`room_archived`)."""
    if room is None:
        raise ProtocolError(
            protocol.ROOM_NOT_FOUND,
            _("There is no room called %(slug)s.") % {"slug": slug}
            if slug
            else _("There is no room at this address."),
        )
    if room.archived:
        raise ProtocolError(
            protocol.ROOM_ARCHIVED, _("This room is archived; it accepts no messages.")
        )
    return room


async def join_refused(*, visitor: str, address: str) -> str | None:
    """The name of the join window that refuses this visitor and address once
    more, or None: the join is counted."""
    by_visitor, by_address = limits.join_windows()
    refused = await limits.get_limiter().hit_all(
        (by_address, address), (by_visitor, visitor)
    )
    if refused is not None:
        logger.warning("join_refused limit=%s", refused.name)
        return refused.name
    return None


def join_refusal() -> ProtocolError:
    return ProtocolError(
        protocol.RATE_LIMITED, _("Too many joins just now; try again shortly.")
    )


async def message_check(
    *, room_id: int, visitor: str, address: str, client_id: str | None
) -> None:
    """Count one message of the visitor in the room, or raise its refusal
    (counted as it arrives, before the save: frames that queued behind a stall
    are not checked in a clump)."""
    if not save_queue.queue_admits(visitor=visitor):
        # Refused before it is counted: the resend costs the sender nothing.
        raise save_queue.busy(client_id)
    by_visitor, by_address = limits.message_windows()
    refused = await limits.get_limiter().hit_all(
        (by_address, address), (by_visitor, f"{room_id}/{visitor}")
    )
    if refused is not None:
        raise ProtocolError(
            protocol.RATE_LIMITED,
            _("You are sending messages too fast; that one was not sent.")
            if refused is by_visitor
            else _("Too many messages from your address; that one was not sent."),
            client_id or None,
        )


async def signal_admitted(*, room_id: int, visitor: str) -> bool:
    """Whether one more typing signal or ping of the visitor in the room goes."""
    refused = await limits.get_limiter().hit_all((SIGNALS, f"{room_id}/{visitor}"))
    return refused is None
