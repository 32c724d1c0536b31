"""
Who is in which room: a Member per nickname and room, a Connection per socket.

A socket's join is two steps: the record (aroom_join, which claims the
nickname; aroom_welcome, which also reads the joiner's history, in lots with
the joins that come at the same time: chat/services/trips.py), then, once
the joiner's welcome went out, the telling (aroom_join_announce). A join whose
welcome never reached its socket is taken back unannounced (aroom_join_undo). A
leave is recorded and told at once (aroom_leave). The sweeps of
chat/services/instances.py record leaves in bulk and tell them afterwards
(aroom_leave_announce).
"""

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass, replace

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils.translation import gettext as _

from .. import nicknames, protocol, selectors
from ..announcements import presence_announce
from ..loops import loop_local
from ..models import Connection, Member, Room
from ..permissions import is_moderator
from ..protocol import Frame, ProtocolError
from ..visitors import account_of
from . import sanctions
from .names import registered_name_clash, registered_owners
from .trips import Trips

User = AbstractBaseUser | AnonymousUser | None


@dataclass(frozen=True)
class Presence:
    nickname: str
    participants: int
    users: list[str]
    # True when this connection brought the nickname into the room (not a second
    # tab or a reconnect of someone already there).
    arrived: bool
    visitor: str = ""
    # The joiner moderates the room (chat/permissions.py).
    moderator: bool = False


@dataclass(frozen=True)
class Claim:
    """A nickname held in a room by a recorded connection."""

    nickname: str
    arrived: bool
    visitor: str = ""
    moderator: bool = False


@dataclass(frozen=True)
class Departure:
    room_id: int
    nickname: str
    participants: int


@dataclass(frozen=True)
class LotReads:
    """What the claims of a lot look up once for all of them: the registered
    users' names among their nicknames, and their rooms where a ban is in force
    (most have none: their claims then read no bans)."""

    owners: dict[str, int]
    banning: set[int]


def lot_reads(claims: list[tuple[int, str]]) -> LotReads:
    """LotReads for claims of (room id, nickname); two queries."""
    skeletons = []
    for _room_id, nickname in claims:
        # A nickname that is not one is refused by its own claim.
        with contextlib.suppress(ProtocolError):
            skeletons.append(nicknames.skeleton(protocol.clean_nickname(nickname)))
    return LotReads(
        owners=registered_owners(skeletons),
        banning=sanctions.rooms_banning(room_id for room_id, _nickname in claims),
    )


def room_join(
    *,
    room_id: int,
    nickname: str,
    visitor: str,
    user: User,
    connection_id: str,
    instance: str,
    address: str = "",
) -> Presence:
    """Claim the nickname in the room for this visitor and record the connection;
    the room's presence with it."""
    with transaction.atomic():
        claim = room_claim(
            room_id=room_id,
            nickname=nickname,
            visitor=visitor,
            user=user,
            connection_id=connection_id,
            instance=instance,
            address=address,
        )
        return _presence(claim, selectors.room_participants(room_id=room_id))


def _presence(claim: Claim, online: tuple[int, list[str]]) -> Presence:
    participants, users = online
    return Presence(
        nickname=claim.nickname,
        participants=participants,
        users=users,
        arrived=claim.arrived,
        visitor=claim.visitor,
        moderator=claim.moderator,
    )


def room_claim(
    *,
    room_id: int,
    nickname: str,
    visitor: str,
    user: User,
    connection_id: str,
    instance: str,
    address: str = "",
    reads: LotReads | None = None,
) -> Claim:
    """Claim the nickname in the room for this visitor and record the connection
    (room_join without reading the room's presence); `banned` for a visitor,
    account or address banned from the room. `reads`: what lot_reads found for
    a lot of claims, this one among them."""
    # Whoever the caller, a stored nickname keeps the rules of chat/nicknames.py.
    nickname = protocol.clean_nickname(nickname)
    skeleton = nicknames.skeleton(nickname)
    if reads is None:
        reads = lot_reads([(room_id, nickname)])
    if registered_name_clash(skeleton, user, reads.owners):
        raise ProtocolError(
            protocol.NICKNAME_TAKEN,
            _("%(nickname)s is a registered user's name; sign in to use it.")
            % {"nickname": nickname},
        )
    user_id = account_of(user)
    moderator = is_moderator(user, room_id)
    # Moderators are held to no ban: not even to one of an address they share.
    banned = (
        not moderator
        and room_id in reads.banning
        and sanctions.join_refusal(
            room_id=room_id, visitor=visitor, user_id=user_id, address=address
        )
    )
    if banned:
        raise banned
    for _attempt in range(3):
        try:
            with transaction.atomic():
                claim = _room_join(
                    room_id,
                    nickname,
                    skeleton,
                    visitor,
                    connection_id,
                    instance,
                    user_id,
                    address,
                )
                return replace(claim, visitor=visitor, moderator=moderator)
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


def _room_join(
    room_id: int,
    nickname: str,
    skeleton: str,
    visitor: str,
    connection_id: str,
    instance: str,
    user_id: int | None,
    address: str,
) -> Claim:
    _lock_visitor_in_room(room_id, visitor)
    # The nicknames this visitor holds in the room, and the member of this
    # one, in one query: each statement of a claim cost more to build in
    # Django than to run (bench/joins.py, py-spy). With the lot's reads and
    # its one commit (_claims), 1000 joins at once took 2.9-3.0 server CPU-s
    # and 2.2 s, where they took 4.4-5.7 CPU-s and 3.4-4.4 s.
    members = list(
        Member.objects.select_for_update()
        .filter(Q(visitor=visitor) | Q(skeleton=skeleton), room_id=room_id)
        .annotate(
            live=Exists(
                selectors.live_connections()
                .filter(member=OuterRef("pk"))
                .exclude(pk=connection_id)
            )
        )
    )
    # One nickname per visitor and room: one person is one participant.
    held = next(
        (
            m.nickname
            for m in members
            if m.visitor == visitor and m.skeleton != skeleton and m.live
        ),
        None,
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
    found = next((m for m in members if m.skeleton == skeleton), None)
    member: Member | None = found
    if found and found.visitor != visitor:
        if found.live:
            raise ProtocolError(
                protocol.NICKNAME_TAKEN,
                _("%(nickname)s is already in this room; choose another nickname.")
                % {"nickname": found.nickname},
            )
        # Held only by a dead instance's ghost: free it.
        found.delete()
        member = None
    arrived = member is None
    if member is None:
        member = Member.objects.create(
            room_id=room_id,
            nickname=nickname,
            skeleton=skeleton,
            visitor=visitor,
            user_id=user_id,
        )
    # A restore after a reap may find its connection recorded already. One
    # upsert, not update_or_create's select, insert and two savepoints.
    Connection.objects.bulk_create(
        [
            Connection(
                id=connection_id, member=member, instance_id=instance, address=address
            )
        ],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=["member", "instance", "address"],
    )
    return Claim(nickname=member.nickname, arrived=arrived)


@dataclass(frozen=True)
class JoinRequest:
    """A join that waits for its lot, with the cursor of its welcome's history."""

    room_id: int
    nickname: str
    last_seq: int | None
    visitor: str
    user: User
    connection_id: str
    instance: str
    address: str = ""


Welcomed = tuple[selectors.HistoryPage, Presence]


def room_join_lot(requests: list[JoinRequest]) -> list[Welcomed | Exception]:
    """
    Join each request as room_join does, with the history its welcome carries;
    or why it failed. What the lot's joins share is read once: a room's page
    for one cursor and the registered names and bans (lot_reads) before the
    claims, the room's online list after them, every claim of the lot in it.
    """
    pages: dict[tuple[int, int | None], selectors.HistoryPage | Exception] = {}
    for request in requests:
        cursor = (request.room_id, request.last_seq)
        if cursor not in pages:
            try:
                pages[cursor] = _welcome_page(*cursor)
            except Exception as exc:  # noqa: BLE001 - these joins' answer
                pages[cursor] = exc
    # Those whose page could not be read are not claimed.
    claims = iter(
        _claims(
            [
                r
                for r in requests
                if not isinstance(pages[(r.room_id, r.last_seq)], Exception)
            ]
        )
    )
    online: dict[int, tuple[int, list[str]] | Exception] = {}
    results: list[Welcomed | Exception] = []
    for request in requests:
        page = pages[(request.room_id, request.last_seq)]
        claim = page if isinstance(page, Exception) else next(claims)
        if isinstance(claim, Exception):
            results.append(claim)
            continue
        if request.room_id not in online:
            try:
                online[request.room_id] = selectors.room_participants(
                    room_id=request.room_id
                )
            except Exception as exc:  # noqa: BLE001 - the room's joins' answer
                online[request.room_id] = exc
        room_online = online[request.room_id]
        if isinstance(room_online, Exception):
            # A join is recorded and told together, or not at all.
            _claim_undo(request.connection_id)
            results.append(room_online)
            continue
        assert not isinstance(page, Exception)  # noqa: S101 - claimed only with one
        results.append((page, _presence(claim, room_online)))
    return results


class _LotFailed(Exception):
    """The database failed a claim of a lot; the lot's transaction is rolled back."""


def _claims(requests: list[JoinRequest]) -> list[Claim | Exception]:
    """
    Each request's claim, or why it failed: all in one transaction, each in a
    savepoint of its own, so that the lot pays one commit (PostgreSQL waits for
    its log to reach the disk at each). Where the database fails any of them
    (the connection, the commit, or a deadlock with another instance's lot: a
    lot holds each claim's locks until it ends), the lot is rolled back and
    each claim made again in a transaction of its own, as a lone join's is.
    """
    if not requests:
        return []
    try:
        reads = lot_reads([(r.room_id, r.nickname) for r in requests])
        with transaction.atomic():
            claims = [_claim(request, reads) for request in requests]
            if any(isinstance(claim, DatabaseError) for claim in claims):
                raise _LotFailed
            return claims
    except (DatabaseError, _LotFailed):
        return [_claim(request, None) for request in requests]


def _claim(request: JoinRequest, reads: LotReads | None) -> Claim | Exception:
    try:
        return room_claim(
            room_id=request.room_id,
            nickname=request.nickname,
            visitor=request.visitor,
            user=request.user,
            connection_id=request.connection_id,
            instance=request.instance,
            address=request.address,
            reads=reads,
        )
    except Exception as exc:  # noqa: BLE001 - this join's answer
        return exc


def _claim_undo(connection_id: str) -> None:
    # Failing too, it is left to the heartbeat's prune (chat/liveness.py).
    with contextlib.suppress(Exception):
        room_leave(connection_id=connection_id)


def member_drop_if_gone(member: Member) -> Departure | None:
    """Take the member out of its room when no live connection holds it there;
    call with the member's row locked."""
    if selectors.live_connections(member.connections).exists():
        return None
    room_id, nickname = member.room_id, member.nickname
    member.delete()
    participants = selectors.room_participant_count(room_id=room_id)
    return Departure(room_id=room_id, nickname=nickname, participants=participants)


def room_leave(*, connection_id: str, instance: str | None = None) -> Departure | None:
    """
    Forget a closed connection; a Departure when its member left the room.
    With `instance`, only while that instance serves it: an HTTP participant
    whose stream moved to another instance is not taken out by the one it left.
    """
    served = Connection.objects.filter(pk=connection_id)
    if instance is not None:
        served = served.filter(instance_id=instance)
    with transaction.atomic():
        connection = served.select_related("member").first()
        if connection is None:
            return None
        member = (
            Member.objects.select_for_update().filter(pk=connection.member_id).first()
        )
        # A leave and the heartbeat's prune can race for the same connection:
        # only the one whose delete removed it goes on.
        deleted, _counts = served.delete()
        if member is None or not deleted:
            return None
        return member_drop_if_gone(member)


# What consumers call ---------------------------------------------------------


async def aroom_join(
    *,
    room_id: int,
    nickname: str,
    visitor: str,
    user: User,
    connection_id: str,
    instance: str,
    address: str = "",
) -> Presence:
    """
    Record the connection in the room. Nobody is told yet: the joiner's welcome
    may still fail, and a join that fails leaves nothing behind
    (aroom_join_undo); aroom_join_announce follows the welcome.
    """
    return await database_sync_to_async(room_join)(
        room_id=room_id,
        nickname=nickname,
        visitor=visitor,
        user=user,
        connection_id=connection_id,
        instance=instance,
        address=address,
    )


def _welcome_page(room_id: int, last_seq: int | None) -> selectors.HistoryPage:
    """The history a welcome carries: the newest messages on a first join, what
    the joiner missed on a return."""
    if last_seq is None:
        return selectors.room_history(
            room_id=room_id, limit=settings.CHAT_HISTORY_LIMIT
        )
    return selectors.room_history(
        room_id=room_id, after=last_seq, limit=settings.CHAT_CATCH_UP_LIMIT
    )


async def aroom_welcome(
    *,
    room: Room,
    nickname: str,
    last_seq: int | None,
    visitor: str,
    user: User,
    connection_id: str,
    instance: str,
    max_bytes: int,
    address: str = "",
) -> tuple[Presence, Frame]:
    """
    Join the room (as aroom_join does, in a lot with the joins that come at
    the same time: room_join_lot) and build the joiner's welcome, at most
    `max_bytes` encoded: its presence and the welcome frame to send. The caller
    subscribes to the room's events first, so that nothing falls between the
    history read here and the live events.
    """
    page, presence = await _join_trips().request(
        JoinRequest(
            room_id=room.pk,
            nickname=nickname,
            last_seq=last_seq,
            visitor=visitor,
            user=user,
            connection_id=connection_id,
            instance=instance,
            address=address,
        )
    )
    try:
        welcome = protocol.welcome_frame(
            room=room,
            presence=presence,
            page=page,
            after=last_seq,
            max_bytes=max_bytes,
        )
    except BaseException:
        await asyncio.shield(aroom_join_undo(connection_id=connection_id))
        raise
    return presence, welcome


async def aroom_join_undo(*, connection_id: str) -> None:
    """Take back a join whose welcome never reached its socket, unannounced."""
    await database_sync_to_async(room_leave)(connection_id=connection_id)


async def _join_request_undo(request: JoinRequest) -> None:
    await aroom_join_undo(connection_id=request.connection_id)


# Joins that come together share one trip to the database thread, their room's
# page and its online list. 1000 clients joining at once over two instances
# (bench/joins.py) read the online list 1000 times before, O(N) each, the 16 %
# of the servers' CPU that was spent there.
_join_trips = loop_local(lambda: Trips(room_join_lot, undo=_join_request_undo))


async def aroom_join_announce(
    *, room_id: int, presence: Presence, connection_id: str
) -> None:
    """Tell the room of a join, when it brought the nickname in; not the joiner."""
    if presence.arrived:
        await presence_announce(
            room_id=room_id,
            frame=protocol.joined_frame(
                nickname=presence.nickname, participants=presence.participants
            ),
            exclude=connection_id,
        )


async def aroom_restore(
    *,
    room_id: int,
    nickname: str,
    visitor: str,
    user: User,
    connection_id: str,
    instance: str,
    address: str = "",
) -> None:
    """Record a connection again after its instance was reaped (taken for
    dead while cut off from the database), and tell the room when that
    brought the nickname back in; ProtocolError when another visitor took the
    nickname meanwhile."""
    restored = await aroom_join(
        room_id=room_id,
        nickname=nickname,
        visitor=visitor,
        user=user,
        connection_id=connection_id,
        instance=instance,
        address=address,
    )
    await aroom_join_announce(
        room_id=room_id, presence=restored, connection_id=connection_id
    )


async def aroom_leave(
    *, connection_id: str, instance: str | None = None
) -> Departure | None:
    """room_leave, then the room is told when the member left it; returns once
    told (a server that stops waits for its sockets' leaves)."""
    departure = await database_sync_to_async(room_leave)(
        connection_id=connection_id, instance=instance
    )
    if departure:
        await aroom_leave_announce(departure, wait=True)
    return departure


async def aroom_leave_announce(
    departure: Departure, *, at_once: bool = False, wait: bool = False
) -> None:
    """Tell the room who left (chat/announcements.py says what at_once and
    wait do)."""
    await presence_announce(
        room_id=departure.room_id,
        frame=protocol.left_frame(
            nickname=departure.nickname, participants=departure.participants
        ),
        at_once=at_once,
        wait=wait,
    )
