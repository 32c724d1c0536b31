"""
The doorbell: room events on the channel layer.

Every event for a room goes to the group ``room-<pk>``; each server process has
one member in that group (chat/hub.py), which hands the event to its local
sockets. Events carry only JSON-native values: channels-redis packs them with
msgpack, which cannot carry datetimes or UUIDs.
"""

import asyncio
import contextvars
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from . import drops, metrics
from .logs import cause
from .loops import loop_local
from .protocol import Frame

EVENT_TYPE = "room.event"
SEND_TIMEOUT_SECONDS = 2.0
# channels-redis keeps one redis-py pool per event loop, and redis-py 8 refuses a
# connection past 100 at once (MaxConnectionsError): 300 sockets typing together
# lost two thirds of their events. Sends wait for one of these slots instead
# (within SEND_TIMEOUT_SECONDS), leaving connections for the hub's receive.
MAX_CONCURRENT_SENDS = 50
_slots = loop_local(lambda: asyncio.Semaphore(MAX_CONCURRENT_SENDS))

# channels-redis's core layer drops a group_send to a channel at its capacity
# without an error: it only logs, at INFO, how many channels were over. That
# line is caught here, and the drop counted and logged like any other
# (chat/drops.py). The text is channels-redis's (4.x, core.py).
OVER_CAPACITY_MESSAGE = "%s of %s channels over capacity in group %s"
# The send under way in this task: how many channels it found full.
_over_capacity: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "over_capacity", default=None
)


class _OverCapacity(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg != OVER_CAPACITY_MESSAGE or not (
            isinstance(args, tuple) and len(args) == 3
        ):
            return True
        over = int(str(args[0]))
        found = _over_capacity.get()
        if found is not None:
            found.append(over)
        else:  # a group_send made elsewhere: its frames are not known
            drops.dropped("layer_channel_full", "event", over, group=args[2])
        # Counted and logged (rate-limited) instead of one line per send.
        return False


def watch_channel_full() -> None:
    """Catch channels-redis's over-capacity line (once per process)."""
    redis_logger = logging.getLogger("channels_redis.core")
    if any(isinstance(f, _OverCapacity) for f in redis_logger.filters):
        return
    redis_logger.addFilter(_OverCapacity())
    if redis_logger.getEffectiveLevel() > logging.INFO:
        # Its one INFO line, and it never reaches a handler (the filter).
        redis_logger.setLevel(logging.INFO)


watch_channel_full()


async def _group_send(room_id: int, event: dict[str, Any]) -> None:
    over: list[int] = []
    token = _over_capacity.set(over)
    try:
        async with _slots():
            await get_channel_layer().group_send(group_name(room_id), event)
    finally:
        _over_capacity.reset(token)
    if over:
        frames = event["frames"]
        # Each full channel is one process's hub: it lost every frame of it.
        drops.dropped(
            "layer_channel_full",
            drops.kind_of(frames),
            sum(over) * len(frames),
            room=room_id,
        )


def group_name(room_id: int) -> str:
    """The room's group on the channel layer: derived from its pk, never a name
    a user chose."""
    return f"room-{int(room_id)}"


async def room_send(
    room_id: int,
    *frames: Frame,
    exclude: str | None = None,
    close: int | None = None,
    excludes: Iterable[str | None] | None = None,
    only: Iterable[str] | None = None,
) -> bool:
    """
    Ring the room's doorbell with one or more frames, in order; False when the
    layer could not take them.

    `excludes`, one connection id (or None) per frame, keeps each frame from
    one socket of its own (coalesced typing: each typist's frame is not sent
    back to it); otherwise `exclude` holds for every frame. Hubs that predate
    "excludes" read only "exclude", None then: a typist's own frame reaches
    its socket, and clients ignore typing of their own nickname
    (docs/protocol.md).

    `only`, visitors (chat/visitors.py), sends the frames (and the close) to
    their sockets and streams alone: a moderator's kick or ban.

    A failure is logged (rate-limited, chat/drops.py) and swallowed: what was
    saved stays saved, and clients catch up from the database by seq. A send
    that found hubs' channels full is counted the same way but answers True:
    which instances lost it is not known, and a sender's copy sent directly
    would come twice wherever the event did arrive.
    """
    event: dict[str, Any] = {
        "type": EVENT_TYPE,
        # The same on every instance that receives it: a long-poll that reaches
        # two instances in turn hears of it from both, and tells it once
        # (chat/http_streams.py).
        "id": secrets.token_hex(6),
        "room": room_id,
        "frames": list(frames),
        "exclude": exclude,
        "close": close,
        # When it was sent, for the fan-out lag the receiving hubs measure
        # (chat/metrics.py); the instances' clocks are the same to NTP's error.
        "at": time.time(),
    }
    if excludes is not None:
        event["excludes"] = list(excludes)
    if only is not None:
        event["only"] = list(only)
    try:
        await asyncio.wait_for(_group_send(room_id, event), SEND_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any layer failure is survivable
        metrics.LAYER_SEND_FAILURES.inc()
        drops.dropped(
            "layer_send_failed",
            drops.kind_of(frames),
            len(frames),
            room=room_id,
            cause=cause(exc),
        )
        return False
    return True


def room_send_sync(room_id: int, frame: Frame, *, close: int | None = None) -> None:
    """From synchronous code (the admin): send once the transaction commits."""
    transaction.on_commit(lambda: async_to_sync(room_send)(room_id, frame, close=close))
