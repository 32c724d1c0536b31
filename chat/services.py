"""
Writes. Each state change is one named function that saves first and then
announces it on the channel layer (chat/events.py): the database is the source
of truth and the live event is a doorbell that may be missed.

The synchronous functions run in Django's database thread; the async ones are
what consumers call.
"""

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from . import events, nicknames, protocol, selectors
from .announcements import presence_announce
from .loops import loop_local
from .models import (
    SKELETON_MAX_LENGTH,
    Connection,
    Instance,
    Member,
    Message,
    RegisteredName,
    Room,
)
from .protocol import ProtocolError
from .typing import get_aggregator, over_budget

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
            # departures, so several sweeping instances announce them once. The
            # delete repeats the query's condition: an instance whose heartbeat
            # came back since it was listed stays.
            deleted, _counts = instances.filter(name=name).delete()
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


def _registered_name_clash(
    skeleton: str, user: AbstractBaseUser | AnonymousUser
) -> bool:
    """Whether a registered user other than `user` has a username of that
    skeleton: one indexed lookup (RegisteredName), however many users."""
    owner = (
        RegisteredName.objects.filter(skeleton=skeleton)
        .values_list("user_id", flat=True)
        .first()
    )
    if owner is None:
        return False
    return not (getattr(user, "is_authenticated", False) and owner == user.pk)


def registered_name_save(*, user: AbstractBaseUser) -> None:
    """Keep the user's RegisteredName in step with their username (after a save)."""
    skeleton = nicknames.skeleton(user.get_username())
    current = RegisteredName.objects.filter(user_id=user.pk).first()
    if current is not None and current.skeleton == skeleton:
        return
    if len(skeleton) > SKELETON_MAX_LENGTH:
        # Longer than any nickname's skeleton: no nickname can pose as it.
        if current is not None:
            current.delete()
        return
    try:
        with transaction.atomic():
            if current is None:
                RegisteredName.objects.create(user_id=user.pk, skeleton=skeleton)
            else:
                current.skeleton = skeleton
                current.save(update_fields=["skeleton"])
    except IntegrityError:
        # A user with a look-alike username was registered first and keeps the
        # name; the old one of this user is free all the same.
        if current is not None:
            current.delete()


def room_join(*, room_id, nickname, visitor, user, connection_id, instance):
    """Claim the nickname in the room for this visitor and record the connection."""
    # Whoever the caller, a stored nickname keeps the rules of chat/nicknames.py.
    nickname = protocol.clean_nickname(nickname)
    skeleton = nicknames.skeleton(nickname)
    if _registered_name_clash(skeleton, user):
        raise ProtocolError(
            protocol.NICKNAME_TAKEN,
            _("%(nickname)s is a registered user's name; sign in to use it.")
            % {"nickname": nickname},
        )
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return _room_join(
                    room_id, nickname, skeleton, visitor, connection_id, instance
                )
        except IntegrityError:
            # Another instance claimed the same nickname at the same moment, or
            # swept a ghost holding it; look again.
            continue
    raise ProtocolError(protocol.NICKNAME_TAKEN, _("That nickname is in use."))


def _lock_visitor_in_room(room_id: int, visitor: str) -> None:
    """
    Take this visitor's joins to the room one at a time until the transaction
    ends, so that two at once (many sockets of one session) cannot each find the
    visitor holding no other nickname yet. SQLite needs none: its transactions
    begin IMMEDIATE (settings.py), one writer at a time.
    """
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"join:{room_id}:{visitor}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)",
            [int.from_bytes(digest[:8], "big", signed=True)],
        )


def _room_join(room_id, nickname, skeleton, visitor, connection_id, instance):
    _lock_visitor_in_room(room_id, visitor)
    # One nickname per visitor and room: one person is one participant.
    held = (
        Member.objects.filter(room_id=room_id, visitor=visitor)
        .exclude(skeleton=skeleton)
        .filter(
            Exists(
                selectors.live_connections()
                .filter(member=OuterRef("pk"))
                .exclude(pk=connection_id)
            )
        )
        .values_list("nickname", flat=True)
        .first()
    )
    if held is not None:
        raise ProtocolError(
            protocol.NICKNAME_TAKEN,
            _(
                "You are already in this room as %(nickname)s; join as "
                "%(nickname)s, or leave the room there first."
            )
            % {"nickname": held},
        )
    member = (
        Member.objects.select_for_update()
        .filter(room_id=room_id, skeleton=skeleton)
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
            room_id=room_id, nickname=nickname, skeleton=skeleton, visitor=visitor
        )
    # A restore after a reap may find its connection recorded already.
    Connection.objects.update_or_create(
        id=connection_id, defaults={"member": member, "instance_id": instance}
    )
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


def _take_seqs(room_id, count):
    """
    Take the room's next `count` seqs: the last of them, or None when the room is
    archived (or gone).

    The row lock this update takes orders concurrent senders, so seqs are handed
    out without gaps and commit in order.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Room._meta.db_table} SET last_seq = last_seq + %s "  # noqa: S608 - the table name is the model's
            "WHERE id = %s AND NOT archived RETURNING last_seq",
            [count, room_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _insert_with_seqs(room_id, messages):
    """
    PostgreSQL: take the seqs and insert the messages in one statement.

    Its row lock is then held for one statement and the commit, not for a round
    trip back to Python between two: under overload, senders queued behind a
    holder waiting for its thread (save delays grew past 40 s, tests/test_faults.py).
    """
    room, table = Room._meta.db_table, Message._meta.db_table
    columns = ("nickname", "text", "created", "client_id", "visitor")
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH room AS (UPDATE {room} SET last_seq = last_seq + %s "  # noqa: S608 - the table names are the models'
            "WHERE id = %s AND NOT archived RETURNING last_seq) "
            f"INSERT INTO {table} "
            "(room_id, seq, nickname, text, created, client_id, visitor) "
            "SELECT %s, room.last_seq - %s + lot.n, lot.nickname, lot.text, "
            "lot.created, lot.client_id, lot.visitor FROM room, "
            "unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], "
            "%s::text[]) WITH ORDINALITY "
            "AS lot(nickname, text, created, client_id, visitor, n) "
            "RETURNING id, seq",
            [len(messages), room_id, room_id, len(messages)]
            + [[getattr(m, column) for m in messages] for column in columns],
        )
        rows = cursor.fetchall()
    return rows or None


def _insert(room_id, messages):
    """Give the messages the room's next seqs and insert them; False if archived."""
    # Atomic either way: a duplicate client_id rolls back the seqs taken, also
    # when the caller is inside a transaction of its own.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            rows = _insert_with_seqs(room_id, messages)
            if rows is None:
                return False
            first = min(seq for _pk, seq in rows)
            for pk, seq in rows:
                message = messages[seq - first]
                message.pk, message.seq = pk, seq
                message._state.adding = False
            return True
        last = _take_seqs(room_id, len(messages))
        if last is None:
            return False
        for seq, message in enumerate(messages, start=last - len(messages) + 1):
            message.seq = seq
        Message.objects.bulk_create(messages)
        return True


def _draft(room_id, nickname, visitor, text, client_id):
    return Message(
        room_id=room_id,
        nickname=nickname,
        text=text,
        client_id=client_id,
        visitor=visitor,
        created=timezone.now(),
    )


def _save_one(message):
    try:
        saved = _insert(message.room_id, [message])
    except IntegrityError:
        if not message.client_id:
            raise
        # Saved before: the constraint on (room, visitor, client_id) caught it, and
        # the seq taken with it went back with the rollback.
        before = Message.objects.get(
            room_id=message.room_id,
            visitor=message.visitor,
            client_id=message.client_id,
        )
        return before, False
    if not saved:
        raise ProtocolError(protocol.ROOM_ARCHIVED, _("This room is archived."))
    return message, True


def message_save(*, room_id, nickname, visitor, text, client_id=""):
    """
    Save a message with the room's next seq; (message, created).

    A client_id the same visitor already used in this room returns the saved
    message instead of a second copy: a resend after a reconnect is not a new
    message.
    """
    return _save_one(_draft(room_id, nickname, visitor, text, client_id))


def messages_save(*, room_id, drafts):
    """
    Save messages of one room together, in order, with consecutive seqs; a
    (message, created) pair or the exception that stopped it for each draft (a
    dict of message_save's arguments but the room).

    One commit for the lot (and one statement on PostgreSQL): saving one message
    at a time, the
    room's row lock allowed about 400 messages/s to two instances (bench/run.py,
    docs/benchmarks.md).
    """
    messages = [_draft(room_id, **draft) for draft in drafts]
    try:
        saved = _insert(room_id, messages)
    except IntegrityError:
        # A resend among them: one at a time, so that the others still go in,
        # and each sender learns what became of its own.
        results = []
        for message in messages:
            try:
                results.append(_save_one(message))
            except Exception as exc:  # noqa: BLE001 - handed to its sender
                results.append(exc)
        return results
    if not saved:
        return [
            ProtocolError(protocol.ROOM_ARCHIVED, _("This room is archived."))
            for _message in messages
        ]
    return [(message, True) for message in messages]


# 1000 ids of up to 19 digits: about 20 KB, well inside the 64 KiB frame limit.
DELETED_IDS_PER_FRAME = 1000


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
            ids.sort()
            # In frames of a bounded size: no frame may pass the server's limit.
            for start in range(0, len(ids), DELETED_IDS_PER_FRAME):
                events.room_send_sync(
                    room_id,
                    {
                        "type": protocol.DELETED,
                        "ids": ids[start : start + DELETED_IDS_PER_FRAME],
                    },
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
    """
    Record the connection in the room. Nobody is told yet: the joiner's welcome
    may still fail, and a join that fails leaves nothing behind
    (join_undo); announce_arrival follows the welcome.
    """
    return await database_sync_to_async(room_join)(
        room_id=room.pk,
        nickname=nickname,
        visitor=visitor,
        user=user,
        connection_id=connection_id,
        instance=instance,
    )


async def join_undo(*, connection_id):
    """Take back a join whose welcome never reached its socket, unannounced."""
    await database_sync_to_async(room_leave)(connection_id=connection_id)


async def announce_arrival(*, room, presence, connection_id):
    if presence.arrived:
        await presence_announce(
            room_id=room.pk,
            kind=protocol.JOINED,
            nickname=presence.nickname,
            participants=presence.participants,
            exclude=connection_id,
        )


async def leave(*, connection_id):
    departure = await database_sync_to_async(room_leave)(connection_id=connection_id)
    if departure:
        await announce_departure(departure, wait=True)
    return departure


async def announce_departure(departure, *, at_once=False, wait=False):
    await presence_announce(
        room_id=departure.room_id,
        kind=protocol.LEFT,
        nickname=departure.nickname,
        participants=departure.participants,
        at_once=at_once,
        wait=wait,
    )


# Messages of this process waiting for the database, at most. Past it a message
# is refused at once with `unavailable` instead of queueing: the send path's
# bound, as the send buffer is the delivery path's. Shared fairly: past it, a
# visitor with nothing waiting is still let in, up to as many again (an honest
# sender within the rate limit has at most one message waiting), so one
# visitor's burst cannot fill it for everyone else.
MAX_SAVES_WAITING = 100


class SaveQueue:
    """
    The messages of one room waiting to be saved by this process.

    What comes in while a lot is being saved is saved next, together
    (messages_save), and announced to the room as one event: a message that
    finds the queue idle goes at once, and a busy room pays one commit and one
    layer event per lot instead of per message. Announcements go out in the
    order of the lots, apart from the saving: a slow layer (Redis unreachable
    for its timeout) does not hold up the next save.
    """

    def __init__(self, room):
        self.room = room
        self.waiting = []
        self.saving = None
        self.announcing = None

    async def post(self, draft):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((draft, future))
        if self.saving is None:
            self.saving = asyncio.create_task(self._save_all())
        return await future

    async def _save_all(self):
        lot = []
        try:
            while self.waiting:
                lot, self.waiting = self.waiting, []
                answers = await self._save(lot)
                self.announcing = asyncio.create_task(
                    self._announce(lot, answers, self.announcing)
                )
                lot = []
        except Exception:
            logger.exception("save_queue_failed room=%s", self.room.pk)
            raise
        finally:
            self.saving = None
            # Left only when the task itself failed or was stopped: the senders
            # get an answer they can act on (resend), not a hang.
            for _draft, future in lot + self.waiting:
                if not future.done():
                    future.set_exception(busy())
            self.waiting = []

    async def _save(self, lot):
        """Each sender's answer: (frame, created), or why it was not saved."""
        try:
            results = await database_sync_to_async(messages_save)(
                room_id=self.room.pk, drafts=[draft for draft, _future in lot]
            )
        except Exception as exc:  # noqa: BLE001 - each sender gets the failure
            results = [exc] * len(lot)
        answers = []
        for result in results:
            if isinstance(result, Exception):
                answers.append(result)
            else:
                message, created = result
                frame = protocol.message_frame(message, self.room.slug)
                answers.append((frame, created))
        return answers

    async def _announce(self, lot, answers, previous):
        if previous is not None:
            # The lot before goes out first, unless the layer holds it up: then
            # each lot waits for its own send only, as a lone message does.
            await asyncio.wait([previous], timeout=events.SEND_TIMEOUT_SECONDS)
        new = [a[0] for a in answers if not isinstance(a, Exception) and a[1]]
        delivered = bool(new) and await events.room_send(self.room.pk, *new)
        for (_draft, future), answer in zip(lot, answers, strict=True):
            if future.done():  # cancelled: its sender went away
                continue
            if isinstance(answer, Exception):
                future.set_exception(answer)
            else:
                frame, created = answer
                future.set_result((frame, created and delivered))


def busy(client_id=None):
    """The refusal of a message the save bound has no room for."""
    return ProtocolError(
        protocol.UNAVAILABLE,
        _("The server is busy; that message was not sent. Try again shortly."),
        client_id or None,
    )


_save_queues = loop_local(dict)
_saves_waiting = 0
# visitor -> how many of their messages wait to be saved.
_waiting_by_visitor: dict[str, int] = {}


def post_admissible(*, visitor):
    """Whether the save bound has room for one more message of this visitor."""
    if _saves_waiting < MAX_SAVES_WAITING:
        return True
    return (
        not _waiting_by_visitor.get(visitor) and _saves_waiting < 2 * MAX_SAVES_WAITING
    )


async def post(*, room, nickname, visitor, text, client_id):
    """
    Save a message, then ring the room's doorbell; (message frame, delivered).

    delivered is False when the room was not told: a resend of a message saved
    before, or a channel layer that could not take the event.
    """
    global _saves_waiting
    if not post_admissible(visitor=visitor):
        raise busy()
    own = _waiting_by_visitor.get(visitor, 0)
    # One queue per room for the life of the process (rooms are made by hand in
    # the admin, so they are few); it frames messages with the room as it is now.
    queues = _save_queues()
    queue = queues.get(room.pk)
    if queue is None:
        queue = queues[room.pk] = SaveQueue(room)
    queue.room = room
    _saves_waiting += 1
    _waiting_by_visitor[visitor] = own + 1
    try:
        return await queue.post(
            {"nickname": nickname, "visitor": visitor, "text": text,
             "client_id": client_id}
        )  # fmt: skip
    finally:
        _saves_waiting -= 1
        left = _waiting_by_visitor.pop(visitor) - 1
        if left:
            _waiting_by_visitor[visitor] = left


async def typing(*, room, nickname, connection_id, active):
    """
    Hand a typing signal to this process's aggregator: the room gets the
    latest state of each typist once every COALESCE_SECONDS (chat/typing.py),
    not one layer event per frame.
    """
    get_aggregator().signal(room.pk, nickname, connection_id, active)


def typing_refused(*, room):
    """A typing signal over its socket's budget: dropped, counted and logged."""
    over_budget(room.pk)
