"""
What a moderator does: in the admin (chat/admin.py), delete messages, archive
or delete a room, change its rules, lift a mute or a ban; in the room itself
(chat/acts.py), delete a message, mute, kick or ban a participant. Each action
changes the database and then tells the room's connected sockets, once the
change commits; each of a moderator's actions on people and messages is
recorded (ModerationRecord), with who did it, to whom, when and why.

A mute, kick or ban holds through the database (chat/services/sanctions.py):
an instance that missed the layer event refuses the participant at their next
message (a ban: or join), and closes a kicked or banned one's sockets at its
next heartbeat (chat/liveness.py).

A room archived or deleted elsewhere (the shell, a QuerySet.update(), a data
migration) changes the database only: its open sockets stay open until they
close, call room_close() to close them at once. Meanwhile the database refuses
what they send: a message to an archived room takes no seq and is answered
`room_archived`, a new join to it is refused, and a deleted room is not found.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User as Account
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import events, nicknames, protocol, selectors
from ..models import Member, Message, ModerationRecord, Room, Sanction
from ..permissions import is_moderator
from ..protocol import Frame, ProtocolError
from ..visitors import account_of
from . import sanctions
from .messages import message_remove
from .presence import User

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


# What a room's pages show of it (protocol.room_details).
ROOM_DETAILS = {"name", "topic", "slow_mode_seconds", "members_only"}


def room_save(*, room: Room, changed: Collection[str]) -> None:
    """
    Save a room a moderator added or edited; `changed` names the fields the
    edit changed (the admin form's changed_data). A room archived by this save
    closes its sockets; a change of what its pages show reaches them live.
    """
    with transaction.atomic():
        room.save()
        if room.archived and "archived" in changed:
            room_close(room_id=room.pk)
        elif ROOM_DETAILS & set(changed):
            events.room_send_sync(room.pk, protocol.room_frame(room))


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


# In the room --------------------------------------------------------------


@dataclass(frozen=True)
class Tell:
    """Frames for a room's sockets, once the action commits: for some visitors
    only (and closing their sockets), or for all."""

    room_id: int
    frame: Frame
    only: tuple[str, ...] | None = None
    close: int | None = None


async def atell(tells: Sequence[Tell]) -> None:
    """Send what an action tells (from async code, after its transaction)."""
    for tell in tells:
        await events.room_send(
            tell.room_id, tell.frame, close=tell.close, only=tell.only
        )


@dataclass(frozen=True)
class Participant:
    """Whom a moderator's action is about."""

    nickname: str
    visitor: str
    user_id: int | None
    # Where their live connections in the room come from.
    addresses: tuple[str, ...]


def not_a_moderator() -> ProtocolError:
    return ProtocolError(
        protocol.FORBIDDEN, _("Only a moderator of this room can do that.")
    )


def _moderator_check(moderator: User, room_id: int) -> Account:
    if moderator is None or not is_moderator(moderator, room_id):
        raise not_a_moderator()
    return moderator  # type: ignore[return-value] # is_moderator: authenticated


def participant_find(*, room_id: int, target: protocol.Target) -> Participant:
    """The participant a moderator names: by nickname (someone in the room
    now), or by a message of theirs; `not_found` for neither."""
    member = None
    if target.message_id is not None:
        message = Message.objects.filter(pk=target.message_id, room_id=room_id).first()
        if message is None:
            raise ProtocolError(
                protocol.NOT_FOUND, _("There is no such message in this room.")
            )
        nickname, visitor, user_id = message.nickname, message.visitor, message.user_id
        member = Member.objects.filter(room_id=room_id, visitor=visitor).first()
    else:
        wanted = target.nickname or ""
        member = Member.objects.filter(
            room_id=room_id, skeleton=nicknames.skeleton(wanted)
        ).first()
        if member is None:
            raise ProtocolError(
                protocol.NOT_FOUND,
                _("%(nickname)s is not in this room.") % {"nickname": wanted},
            )
        nickname, visitor, user_id = member.nickname, member.visitor, member.user_id
    addresses: tuple[str, ...] = ()
    if member is not None:
        addresses = tuple(
            sorted(
                {
                    a
                    for a in selectors.live_connections(member.connections).values_list(
                        "address", flat=True
                    )
                    if a
                }
            )
        )
    return Participant(
        nickname=nickname, visitor=visitor, user_id=user_id, addresses=addresses
    )


def _record(
    moderator: Account,
    action: str,
    *,
    room_id: int | None,
    nickname: str = "",
    visitor: str = "",
    message_id: int | None = None,
    reason: str = "",
    expires: datetime | None = None,
    detail: str = "",
) -> ModerationRecord:
    return ModerationRecord.objects.create(
        moderator=moderator,
        moderator_name=moderator.get_username(),
        action=action,
        room_id=room_id,
        nickname=nickname,
        visitor=visitor,
        message_id=message_id,
        reason=reason,
        expires=expires,
        detail=detail[:200],
    )


def _targets(
    room_ids: Sequence[int] | None, participant: Participant, *, address: bool
) -> dict[int, tuple[str, ...]]:
    """The visitors to close in each room (every room the participant is in,
    for None): theirs, their account's other sessions, and with `address`
    whoever comes from their address."""
    match = Q(visitor=participant.visitor)
    if participant.user_id is not None:
        match |= Q(user_id=participant.user_id)
    if address and participant.addresses:
        match |= Q(
            connections__in=selectors.live_connections().filter(
                address__in=participant.addresses
            )
        )
    members = Member.objects.filter(match)
    if room_ids is not None:
        members = members.filter(room_id__in=room_ids)
    found: dict[int, set[str]] = {room_id: set() for room_id in room_ids or ()}
    for room_id, visitor in members.values_list("room_id", "visitor"):
        found.setdefault(room_id, set()).add(visitor)
    for visitors in found.values():
        visitors.add(participant.visitor)
    return {room_id: tuple(sorted(v)) for room_id, v in found.items()}


KINDS = {
    protocol.MUTE: Sanction.Kind.MUTE,
    protocol.KICK: Sanction.Kind.KICK,
    protocol.BAN: Sanction.Kind.BAN,
}
CLOSES = {protocol.KICK: protocol.CLOSE_KICKED, protocol.BAN: protocol.CLOSE_BANNED}
KICK_KEPT = timedelta(days=1)


def participant_moderate(
    *, room: Room, moderator: User, visitor: str, frame: protocol.Moderation
) -> tuple[Frame, list[Tell]]:
    """
    A moderator's mute, kick or ban of a participant of the room: recorded,
    and what to tell whom once it commits. The moderator's answer is the
    `moderated` frame; `forbidden` for anyone else. `visitor` is the
    moderator's own: never closed, not even by a ban of the address they share.
    """
    with transaction.atomic():
        by = _moderator_check(moderator, room.pk)
        participant = participant_find(room_id=room.pk, target=frame.target)
        if participant.visitor == visitor or (
            participant.user_id is not None and participant.user_id == by.pk
        ):
            raise ProtocolError(
                protocol.FORBIDDEN, _("A moderator cannot act on themselves.")
            )
        now = timezone.now()
        expires = (
            now + timedelta(seconds=frame.seconds)
            if frame.seconds is not None
            else None
        )
        sanction = Sanction.objects.create(
            kind=KINDS[frame.type],
            room=None if frame.everywhere else room,
            nickname=participant.nickname,
            visitor=participant.visitor,
            user_id=participant.user_id,
            address=participant.addresses[0]
            if frame.address and participant.addresses
            else "",
            reason=frame.reason,
            # A kick is kept for as long as a socket that missed its layer
            # event could go unnoticed; it never holds for a later join.
            expires=now + KICK_KEPT if frame.type == protocol.KICK else expires,
            moderator=by,
        )
        told = sanctions.refusal(sanction, now=now).frame()
        tells: list[Tell] = []
        if frame.type == protocol.MUTE:
            tells.append(Tell(room.pk, told, only=(participant.visitor,)))
        else:
            rooms = None if frame.everywhere else [room.pk]
            for room_id, found in _targets(
                rooms, participant, address=frame.address
            ).items():
                visitors = tuple(v for v in found if v != visitor)
                tells.append(
                    Tell(room_id, told, only=visitors, close=CLOSES[frame.type])
                )
        _record(
            by,
            frame.type,
            room_id=room.pk,
            nickname=participant.nickname,
            visitor=participant.visitor,
            reason=frame.reason,
            expires=expires,
            detail=_("every room") if frame.everywhere else "",
        )
    return (
        protocol.moderated_frame(
            action=frame.type,
            nickname=participant.nickname,
            until=protocol.timestamp(expires),
            everywhere=frame.everywhere,
        ),
        tells,
    )


def message_take_back(
    *, room: Room, message_id: int, visitor: str, user: User
) -> list[Tell]:
    """
    A message deleted from the room page: by its author (see
    messages.message_delete), or by a moderator, recorded. A "message
    deleted" takes its place on every page.
    """
    from .messages import message_delete

    user_id = account_of(user)
    with transaction.atomic():
        message = (
            Message.objects.select_for_update()
            .filter(pk=message_id, room_id=room.pk, deleted__isnull=True)
            .first()
        )
        if message is None:
            raise ProtocolError(
                protocol.NOT_FOUND, _("There is no such message in this room.")
            )
        own = message.visitor == visitor or (
            user_id is not None and message.user_id == user_id
        )
        if own:
            message_delete(
                room_id=room.pk, message_id=message_id, visitor=visitor, user_id=user_id
            )
        else:
            by = _moderator_check(user, room.pk)
            _record(
                by,
                ModerationRecord.Action.DELETE,
                room_id=room.pk,
                nickname=message.nickname,
                visitor=message.visitor,
                message_id=message.pk,
                detail=message.text,
            )
            message_remove(message)
    return [Tell(room.pk, protocol.deleted_frame(ids=[message_id]))]


def sanctions_lift(*, sanctions_to_lift: QuerySet[Sanction], moderator: Account) -> int:
    """Lift mutes and bans (the admin): they hold no more from now on, on
    every instance (each asks the database). How many were in force."""
    with transaction.atomic():
        lifted = 0
        now = timezone.now()
        # By pk: the admin's query joins the room and moderator, which
        # PostgreSQL does not lock.
        pending = Sanction.objects.select_for_update().filter(
            pk__in=list(sanctions_to_lift.values_list("pk", flat=True)),
            lifted__isnull=True,
        )
        for sanction in pending:
            sanction.lifted = now
            sanction.save(update_fields=["lifted"])
            _record(
                moderator,
                ModerationRecord.Action.LIFT,
                room_id=sanction.room_id,
                nickname=sanction.nickname,
                visitor=sanction.visitor,
                detail=sanction.get_kind_display(),
            )
            lifted += 1
        return lifted
