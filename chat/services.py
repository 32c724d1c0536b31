"""
Writes. Each state change is one named function that saves first and then
announces it on the channel layer (chat/events.py): the database is the source
of truth and the live event is a doorbell that may be missed.

The synchronous functions run in Django's database thread; the async ones are
what consumers call.
"""

import hashlib
import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from . import events, protocol, selectors
from .models import Connection, Instance, Member, Message, Room
from .protocol import ProtocolError

logger = logging.getLogger(__name__)


def visitor_key(secret):
    """A stable, non-reversible id for a session key (or a connection's own id)."""
    return hashlib.sha256(f"visitor:{secret}".encode()).hexdigest()[:40]


# Instances -------------------------------------------------------------------


def instance_heartbeat(*, instance):
    """Record that the instance is alive; True when its row had to be made anew
    (the first beat, or after others took it for dead and reaped it)."""
    _instance, created = Instance.objects.update_or_create(
        name=instance, defaults={"heartbeat": timezone.now()}
    )
    return created


def instance_remove(*, instance):
    """A clean shutdown: the instance's connections leave at once."""
    return _instances_reap(Instance.objects.filter(name=instance))


def instances_sweep():
    """Forget instances that stopped beating; returns who left which room."""
    return _instances_reap(
        Instance.objects.filter(heartbeat__lt=selectors.live_cutoff())
    )


def instance_connections_prune(*, instance, serving, older_than):
    """
    Forget connections this instance recorded but no longer serves (their leave
    failed, say in a database outage); who left which room, as the sweep says.
    Only connections opened before `older_than`: a younger one may belong to a
    socket still joining.
    """
    recorded = Connection.objects.filter(
        instance_id=instance, opened__lt=older_than
    ).values_list("id", flat=True)
    departures = []
    for connection_id in set(recorded) - set(serving):
        departure = room_leave(connection_id=connection_id)
        if departure:
            departures.append(departure)
    return departures


@dataclass(frozen=True)
class Departure:
    room_id: int
    nickname: str
    participants: int


def _instances_reap(instances):
    departures = []
    for name in list(instances.values_list("name", flat=True)):
        with transaction.atomic():
            member_ids = set(
                Connection.objects.filter(instance_id=name).values_list(
                    "member_id", flat=True
                )
            )
            # Only the process whose delete removed the row reports the
            # departures, so several sweeping instances announce them once.
            deleted, _counts = Instance.objects.filter(name=name).delete()
            if not deleted:
                continue
            for member in Member.objects.filter(pk__in=member_ids).select_for_update():
                departure = _member_drop_if_gone(member)
                if departure:
                    departures.append(departure)
        logger.info("instance_reaped instance=%s members=%d", name, len(member_ids))
    return departures


# Presence --------------------------------------------------------------------


@dataclass(frozen=True)
class Presence:
    nickname: str
    participants: int
    users: list
    # True when this connection brought the nickname into the room (not a second
    # tab or a reconnect of someone already there).
    arrived: bool


def _registered_name_clash(nickname, user):
    User = get_user_model()
    field = f"{User.USERNAME_FIELD}__iexact"
    if not User.objects.filter(**{field: nickname}).exists():
        return False
    own = getattr(user, "is_authenticated", False) and (
        user.get_username().casefold() == nickname.casefold()
    )
    return not own


def room_join(*, room_id, nickname, visitor, user, connection_id, instance):
    """Claim the nickname in the room for this visitor and record the connection."""
    if _registered_name_clash(nickname, user):
        raise ProtocolError(
            protocol.NICKNAME_TAKEN,
            _("%(nickname)s is a registered user's name; sign in to use it.")
            % {"nickname": nickname},
        )
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return _room_join(room_id, nickname, visitor, connection_id, instance)
        except IntegrityError:
            # Another instance claimed the same nickname at the same moment, or
            # swept a ghost holding it; look again.
            continue
    raise ProtocolError(protocol.NICKNAME_TAKEN, _("That nickname is in use."))


def _room_join(room_id, nickname, visitor, connection_id, instance):
    member = (
        Member.objects.select_for_update()
        .filter(room_id=room_id, nickname__iexact=nickname)
        .first()
    )
    if member and member.visitor != visitor:
        if selectors.live_connections(member.connections).exists():
            raise ProtocolError(
                protocol.NICKNAME_TAKEN,
                _("%(nickname)s is already in this room; choose another nickname.")
                % {"nickname": member.nickname},
            )
        # Held only by a dead instance's ghost: free it.
        member.delete()
        member = None
    arrived = member is None
    if arrived:
        member = Member.objects.create(
            room_id=room_id, nickname=nickname, visitor=visitor
        )
    Connection.objects.create(id=connection_id, member=member, instance_id=instance)
    participants, users = selectors.room_participants(room_id=room_id)
    return Presence(
        nickname=member.nickname,
        participants=participants,
        users=users,
        arrived=arrived,
    )


def _member_drop_if_gone(member):
    if selectors.live_connections(member.connections).exists():
        return None
    room_id, nickname = member.room_id, member.nickname
    member.delete()
    participants, _users = selectors.room_participants(room_id=room_id)
    return Departure(room_id=room_id, nickname=nickname, participants=participants)


def room_leave(*, connection_id):
    """Forget a closed connection; a Departure when its member left the room."""
    with transaction.atomic():
        connection = (
            Connection.objects.select_related("member").filter(pk=connection_id).first()
        )
        if connection is None:
            return None
        member = (
            Member.objects.select_for_update().filter(pk=connection.member_id).first()
        )
        # A leave and the heartbeat's prune can race for the same connection:
        # only the one whose delete removed it goes on.
        deleted, _counts = Connection.objects.filter(pk=connection_id).delete()
        if member is None or not deleted:
            return None
        return _member_drop_if_gone(member)


# Messages --------------------------------------------------------------------


def _next_seq(room_id):
    """
    Take the room's next seq: None when the room is archived (or gone).

    The row lock this update takes orders concurrent senders, so seqs are handed
    out without gaps and commit in order.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Room._meta.db_table} SET last_seq = last_seq + 1 "  # noqa: S608 - the table name is the model's
            "WHERE id = %s AND NOT archived RETURNING last_seq",
            [room_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _insert_with_next_seq(message):
    """
    PostgreSQL: take the seq and insert the message in one statement.

    Its row lock is then held for one statement and the commit, not for a round
    trip back to Python between two: under overload, senders queued behind a
    holder waiting for its thread (save delays grew past 40 s, tests/test_faults.py).
    """
    room, table = Room._meta.db_table, Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH room AS (UPDATE {room} SET last_seq = last_seq + 1 "  # noqa: S608 - the table names are the models'
            "WHERE id = %s AND NOT archived RETURNING last_seq) "
            f"INSERT INTO {table} "
            "(room_id, seq, nickname, text, created, client_id, visitor) "
            "SELECT %s, last_seq, %s, %s, %s, %s, %s FROM room RETURNING id, seq",
            [
                message.room_id,
                message.room_id,
                message.nickname,
                message.text,
                message.created,
                message.client_id,
                message.visitor,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    message.pk, message.seq = row
    message._state.adding = False
    return message


def _insert(message):
    # Atomic either way: a duplicate client_id rolls back the seq it took, also
    # when the caller is inside a transaction of its own.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            return _insert_with_next_seq(message)
        message.seq = _next_seq(message.room_id)
        if message.seq is None:
            return None
        message.save(force_insert=True)
        return message


def message_save(*, room_id, nickname, visitor, text, client_id=""):
    """
    Save a message with the room's next seq; (message, created).

    A client_id the same visitor already used in this room returns the saved
    message instead of a second copy: a resend after a reconnect is not a new
    message.
    """
    message = Message(
        room_id=room_id,
        nickname=nickname,
        text=text,
        client_id=client_id,
        visitor=visitor,
        created=timezone.now(),
    )
    try:
        saved = _insert(message)
    except IntegrityError:
        if not client_id:
            raise
        # Saved before: the constraint on (room, visitor, client_id) caught it, and
        # the seq taken with it went back with the rollback.
        saved = Message.objects.get(
            room_id=room_id, visitor=visitor, client_id=client_id
        )
        return saved, False
    if saved is None:
        raise ProtocolError(protocol.ROOM_ARCHIVED, _("This room is archived."))
    return saved, True


def messages_delete(*, messages):
    """
    Delete messages (a moderator's doing) and take them off connected screens:
    one `deleted` event per room once the deletion commits.
    """
    with transaction.atomic():
        by_room = {}
        for message_id, room_id in messages.values_list("pk", "room_id"):
            by_room.setdefault(room_id, []).append(message_id)
        # Exactly the messages announced, whatever else the query would match now.
        Message.objects.filter(
            pk__in=[i for ids in by_room.values() for i in ids]
        ).delete()
        for room_id, ids in by_room.items():
            events.room_send_sync(
                room_id, {"type": protocol.DELETED, "ids": sorted(ids)}
            )


def room_closed(*, room_id):
    """Tell a room's sockets that it was archived (or removed) and close them."""
    events.room_send_sync(
        room_id,
        protocol.error_frame(
            protocol.ROOM_ARCHIVED,
            _("This room has been archived by a moderator; it accepts no messages."),
        ),
        close=protocol.CLOSE_ROOM_ARCHIVED,
    )


# What consumers call ---------------------------------------------------------


async def join(*, room, nickname, visitor, user, connection_id, instance):
    presence = await database_sync_to_async(room_join)(
        room_id=room.pk,
        nickname=nickname,
        visitor=visitor,
        user=user,
        connection_id=connection_id,
        instance=instance,
    )
    if presence.arrived:
        await events.room_send(
            room.pk,
            {
                "type": protocol.JOINED,
                "nickname": presence.nickname,
                "participants": presence.participants,
            },
            exclude=connection_id,
        )
    return presence


async def leave(*, connection_id):
    departure = await database_sync_to_async(room_leave)(connection_id=connection_id)
    if departure:
        await announce_departure(departure)
    return departure


async def announce_departure(departure):
    await events.room_send(
        departure.room_id,
        {
            "type": protocol.LEFT,
            "nickname": departure.nickname,
            "participants": departure.participants,
        },
    )


# Messages of this process waiting for the database, at most. Past it a message
# is refused at once with `unavailable` instead of queueing: the send path's
# bound, as the send buffer is the delivery path's.
MAX_SAVES_WAITING = 100
_saves_waiting = 0


async def post(*, room, nickname, visitor, text, client_id):
    """
    Save a message, then ring the room's doorbell; (message frame, delivered).

    delivered is False when the room was not told: a resend of a message saved
    before, or a channel layer that could not take the event.
    """
    global _saves_waiting
    if _saves_waiting >= MAX_SAVES_WAITING:
        raise ProtocolError(
            protocol.UNAVAILABLE,
            _("The server is busy; that message was not sent. Try again shortly."),
        )
    _saves_waiting += 1
    try:
        message, created = await database_sync_to_async(message_save)(
            room_id=room.pk,
            nickname=nickname,
            visitor=visitor,
            text=text,
            client_id=client_id,
        )
    finally:
        _saves_waiting -= 1
    frame = protocol.message_frame(message, room.slug)
    delivered = created and await events.room_send(room.pk, frame)
    return frame, delivered


async def typing(*, room, nickname, connection_id, active):
    await events.room_send(
        room.pk,
        {
            "type": protocol.TYPING if active else protocol.STOP_TYPING,
            "nickname": nickname,
        },
        exclude=connection_id,
    )
