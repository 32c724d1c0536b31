"""
What a participant's edit and delete frames, and a moderator's mute, kick and
ban, do, whichever transport they came by (chat/consumers.py,
chat/http_views.py): checked, done in the database, told to the room. The
answer for the one who sent the frame, if any, is returned.
"""

from dataclasses import dataclass

from channels.db import database_sync_to_async

from . import admission, events, protocol
from .models import Room
from .protocol import Frame
from .services import messages, moderation
from .services.presence import User
from .visitors import account_of

Act = protocol.Edit | protocol.Delete | protocol.Moderation


@dataclass(frozen=True)
class Actor:
    """Who sent the frame, from where, in which room."""

    room: Room
    visitor: str
    user: User
    address: str


async def act(actor: Actor, frame: Act) -> Frame | None:
    room = actor.room
    if isinstance(frame, protocol.Moderation):
        if not getattr(actor.user, "is_staff", False):
            # Not even a trip to the database thread: only staff moderate
            # (chat/permissions.py asks the rest there).
            raise moderation.not_a_moderator()
        answer, tells = await database_sync_to_async(moderation.participant_moderate)(
            room=room, moderator=actor.user, visitor=actor.visitor, frame=frame
        )
        await moderation.atell(tells)
        return answer
    # Edits and deletions count as messages do, against the same limits.
    await admission.message_check(
        room_id=room.pk, visitor=actor.visitor, address=actor.address, client_id=None
    )
    if isinstance(frame, protocol.Edit):
        edited = await database_sync_to_async(messages.message_edit)(
            room_id=room.pk,
            message_id=frame.id,
            visitor=actor.visitor,
            user_id=account_of(actor.user),
            text=frame.text,
        )
        told = protocol.edited_frame(edited, room.slug)
        # Everyone sees it, its author too; when the layer could not take it,
        # the author at least (others catch up by history).
        return None if await events.room_send(room.pk, told) else told
    tells = await database_sync_to_async(moderation.message_take_back)(
        room=room, message_id=frame.id, visitor=actor.visitor, user=actor.user
    )
    await moderation.atell(tells)
    return None
