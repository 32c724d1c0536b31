"""
What a moderator does, in the admin (chat/admin.py): delete messages, archive
or delete a room. Each action changes the database and then tells the room's
connected sockets, once the change commits.

A room archived or deleted elsewhere (the shell, a QuerySet.update(), a data
migration) changes the database only: its open sockets stay open until they
close, call room_close() to close them at once. Meanwhile the database refuses
what they send: a message to an archived room takes no seq and is answered
`room_archived`, a new join to it is refused, and a deleted room is not found.
"""

from collections.abc import Collection

from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from .. import events, protocol
from ..models import Message, Room

# 1000 ids of up to 19 digits: about 20 KB, well inside the 64 KiB frame limit.
DELETED_IDS_PER_FRAME = 1000


def messages_delete(*, messages: QuerySet[Message]) -> None:
    """
    Delete messages and take them off connected screens: one `deleted` event
    per room once the deletion commits.
    """
    with transaction.atomic():
        by_room: dict[int, list[int]] = {}
        for message_id, room_id in messages.values_list("pk", "room_id"):
            by_room.setdefault(room_id, []).append(message_id)
        # Exactly the messages announced, whatever else the query would match now.
        Message.objects.filter(
            pk__in=[i for ids in by_room.values() for i in ids]
        ).delete()
        for room_id, ids in by_room.items():
            ids.sort()
            # In frames of a bounded size: no frame may pass the server's limit.
            for start in range(0, len(ids), DELETED_IDS_PER_FRAME):
                events.room_send_sync(
                    room_id,
                    protocol.deleted_frame(
                        ids=ids[start : start + DELETED_IDS_PER_FRAME]
                    ),
                )


def room_close(*, room_id: int) -> None:
    """Tell a room's sockets that it was archived (or removed) and close them,
    once the transaction commits."""
    events.room_send_sync(
        room_id,
        protocol.error_frame(
            protocol.ROOM_ARCHIVED,
            _("This room has been archived by a moderator; it accepts no messages."),
        ),
        close=protocol.CLOSE_ROOM_ARCHIVED,
    )


def room_save(*, room: Room, changed: Collection[str]) -> None:
    """
    Save a room a moderator added or edited; `changed` names the fields the
    edit changed (the admin form's changed_data). A room archived by this save
    closes its sockets.
    """
    with transaction.atomic():
        room.save()
        if room.archived and "archived" in changed:
            room_close(room_id=room.pk)


def room_delete(*, room: Room) -> None:
    """Delete a room, its messages and presence with it, and close its sockets."""
    with transaction.atomic():
        room_id = room.pk
        room.delete()
        room_close(room_id=room_id)


def rooms_delete(*, rooms: QuerySet[Room]) -> None:
    """room_delete for each room of the query, in one transaction."""
    with transaction.atomic():
        room_ids = list(rooms.values_list("pk", flat=True))
        Room.objects.filter(pk__in=room_ids).delete()
        for room_id in room_ids:
            room_close(room_id=room_id)
