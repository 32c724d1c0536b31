"""
The doorbell: room events on the channel layer.

Every event for a room goes to the group ``room-<pk>``; each server process has
one member in that group (chat/hub.py), which hands the event to its local
sockets. Events carry only JSON-native values: channels-redis packs them with
msgpack, which cannot carry datetimes or UUIDs.
"""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from .health import cause
from .loops import loop_local

logger = logging.getLogger(__name__)

EVENT_TYPE = "room.event"
SEND_TIMEOUT_SECONDS = 2.0
# channels-redis keeps one redis-py pool per event loop, and redis-py 8 refuses a
# connection past 100 at once (MaxConnectionsError): 300 sockets typing together
# lost two thirds of their events. Sends wait for one of these slots instead
# (within SEND_TIMEOUT_SECONDS), leaving connections for the hub's receive.
MAX_CONCURRENT_SENDS = 50
_slots = loop_local(lambda: asyncio.Semaphore(MAX_CONCURRENT_SENDS))


async def _group_send(room_id, event):
    async with _slots():
        await get_channel_layer().group_send(group_name(room_id), event)


def group_name(room_id):
    return f"room-{int(room_id)}"


async def room_send(room_id, *frames, exclude=None, close=None):
    """
    Ring the room's doorbell with one or more frames, in order; False when the
    layer could not take them.

    A failure is logged and swallowed: what was saved stays saved, and clients
    catch up from the database by seq.
    """
    event = {
        "type": EVENT_TYPE,
        "room": room_id,
        "frames": list(frames),
        "exclude": exclude,
        "close": close,
    }
    try:
        await asyncio.wait_for(_group_send(room_id, event), SEND_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any layer failure is survivable
        logger.warning(
            "layer_send_failed room=%s type=%s cause=%s",
            room_id,
            frames[0]["type"] if frames else "-",
            cause(exc),
        )
        return False
    return True


def room_send_sync(room_id, frame, *, close=None):
    """From synchronous code (the admin): send once the transaction commits."""
    transaction.on_commit(lambda: async_to_sync(room_send)(room_id, frame, close=close))
