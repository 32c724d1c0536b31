"""
Participants on the HTTP transport (docs/protocol.md, "The HTTP transport").

A participant is what a socket is to the hub (chat/hub.py): a member of the
room in this process, whose connection is recorded in the room's presence
under this instance. It is made by the join POST, or by the first stream or
poll that reaches an instance without it, and it is held by its stream or by
the poll under way. Between two polls, or after its stream broke, it is kept
for CHAT_HTTP_GRACE_SECONDS, gathering the room's events; then it leaves.

Nothing ties a participant to one instance: its ticket (signed, carried by
every request) names its connection, room, nickname and visitor, so that a
POST is served by whichever instance it reaches, and a stream that lands on
another instance makes the participant there, welcomed again from the
client's last seq. The connection's presence row then names that instance,
and the instance left behind takes nothing out when its own copy expires
(presence.aroom_leave's `instance`).
"""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace

from django.conf import settings
from django.core import signing
from django.utils.translation import gettext as _

from . import metrics, protocol
from .hub import Batch, Event, get_hub
from .logs import cause, is_outage
from .loops import loop_local
from .models import Room
from .protocol import ProtocolError
from .services import presence
from .transport import TwistedStream, chunk

logger = logging.getLogger(__name__)

TICKET_SALT = "chat.http.ticket"
# Frames waiting for a participant's stream or next poll, at most. Past it they
# are dropped, and the next stream or poll starts with a welcome that catches
# up by seq (nothing of the room's history is lost).
MAX_QUEUED_EVENTS = 1000
HEARTBEAT = b": keep-alive\n\n"
# Cursors a poll may carry, at most (one per instance it went round).
MAX_CURSORS = 8


@dataclass(frozen=True)
class Ticket:
    """Who a participant is, signed: handed out by the join, carried by every
    request of the participant."""

    connection_id: str
    room_id: int
    nickname: str
    visitor: str

    def signed(self) -> str:
        return signing.dumps(
            [self.connection_id, self.room_id, self.nickname, self.visitor],
            salt=TICKET_SALT,
        )


def ticket_read(value: str | None, *, room_id: int, visitor: str | None) -> Ticket:
    """The ticket of a request, or ProtocolError: none (`not_joined`), or one
    that is forged, for another room or another visitor's (`forbidden`)."""
    if not value:
        raise ProtocolError(
            protocol.NOT_JOINED, _("Join the room first: this request has no ticket.")
        )
    try:
        connection_id, ticket_room, nickname, ticket_visitor = signing.loads(
            value, salt=TICKET_SALT
        )
    except (signing.BadSignature, ValueError, TypeError):
        raise ProtocolError(
            protocol.FORBIDDEN, _("This ticket is not valid.")
        ) from None
    if ticket_room != room_id or visitor is None or ticket_visitor != visitor:
        raise ProtocolError(
            protocol.FORBIDDEN, _("This ticket is for another room or visitor.")
        )
    return Ticket(connection_id, room_id, nickname, visitor)


@dataclass(frozen=True)
class Queued:
    """One frame waiting: as JSON text (for a poll) and as an event (a stream),
    with its key (chat/hub.py's Event.key) for a poll to tell it once."""

    number: int
    text: str
    event: bytes
    key: str | None = None


class HttpParticipant:
    """One participant on the HTTP transport, in this process."""

    def __init__(
        self, *, ticket: Ticket, room: Room, user: presence.User, address: str = ""
    ) -> None:
        self.ticket = ticket
        self.connection_id = ticket.connection_id
        self.visitor = ticket.visitor
        # The client's address where it was made (an address ban takes it).
        self.address = address
        self.room = room
        self.user = user
        self.instance: str = settings.CHAT_INSTANCE_ID
        # A poll's cursor is "<epoch>.<number>": a cursor of another epoch was
        # handed out by another copy of the participant (another instance, or
        # one that expired), and is answered with a welcome.
        self.epoch = secrets.token_hex(4)
        self.queue: list[Queued] = []
        self.numbered = 0
        self.wake = asyncio.Event()
        # Recorded in the room's presence (by a welcome), until it left.
        self.joined = False
        self.attached = False
        self.floor = 0
        # Room events that arrive during a welcome wait here.
        self.backlog: list[Event] | None = None
        # Frames were dropped (or its presence was lost): a welcome is due.
        self.stale = True
        # Its room closed it (archived): what is queued is its last.
        self.final = False
        self.gone = False
        # Which stream serves it: a newer one ends the older.
        self.stream_number = 0
        # Where its frames are written while a stream serves it, and whether
        # a write is under way.
        self.outlet: Callable[[bytes], Awaitable[None]] | None = None
        # The same response, written to directly where the server allows it.
        self.direct: TwistedStream | None = None
        self.writing = False
        self.written_at = 0.0
        self.holders = 0
        self.expiry: asyncio.TimerHandle | None = None
        self.leaving: asyncio.Task[None] | None = None
        self.welcoming = asyncio.Lock()

    # Welcome -----------------------------------------------------------------

    async def welcome(self, last_seq: int | None) -> protocol.Frame:
        """
        Record the participant in the room and queue its welcome (history
        since `last_seq`) ahead of everything else; returns the welcome.
        """
        async with self.welcoming:
            hub = get_hub()
            self.backlog = []
            if not self.attached:
                await hub.attach(self.room.pk, self)
                self.attached = True
            try:
                joined, welcome = await presence.aroom_welcome(
                    room=self.room,
                    nickname=self.ticket.nickname,
                    last_seq=last_seq,
                    visitor=self.ticket.visitor,
                    user=self.user,
                    connection_id=self.connection_id,
                    instance=self.instance,
                    max_bytes=settings.CHAT_MAX_FRAME_BYTES,
                    address=self.address,
                )
            except BaseException:
                self.backlog = None
                if not self.joined:
                    self.attached = False
                    await hub.detach(self.room.pk, self)
                raise
            if not self.joined:
                # A stream or poll that resumes is welcomed again: no new join.
                metrics.JOINS.labels("http").inc()
                metrics.CONNECTIONS.labels("http").inc()
            self.joined = True
            self.stale = False
            self.ticket = replace(self.ticket, nickname=welcome["nickname"])
            self.floor = welcome["last_seq"]
            self.queue = []
            text = protocol.encode(welcome)
            self._put(text, protocol.stream_event(text, welcome["last_seq"]))
            backlog, self.backlog = self.backlog, None
            if backlog:
                await self.deliver(Batch(backlog))
            await presence.aroom_join_announce(
                room_id=self.room.pk, presence=joined, connection_id=self.connection_id
            )
            return welcome

    # From the hub ------------------------------------------------------------

    async def deliver(self, batch: Batch) -> None:
        if self.backlog is not None:
            self.backlog.extend(batch.events)
            return
        if self.gone or self.final or self.stale:
            return
        events = batch.wanted_by(self.connection_id, self.floor, self.visitor)
        if not events:
            return
        if self.outlet is not None and not self.queue and not self.writing:
            # Written at once, from the hub's round, as a socket's frames are:
            # a wake-up of the stream's own task per event cost five times the
            # CPU of a socket's delivery (docs/benchmarks.md).
            self.closes_after(events)
            whole = events is batch.events
            direct = self.direct
            if direct is not None and direct.writable():
                if direct.buffered() > settings.CHAT_SEND_BUFFER_BYTES:
                    self.too_slow()
                    return
                direct.write(
                    batch.stream_chunk
                    if whole
                    else chunk(b"".join(e.stream for e in events))
                )
                self.written_at = asyncio.get_running_loop().time()
                return
            await self.write(
                batch.stream if whole else b"".join(e.stream for e in events)
            )
            return
        for event in events:
            self._put(event.message["text"], event.stream, event.key)
            if self.closes_after([event]):
                break

    def closes_after(self, events: list[Event]) -> bool:
        """Whether one of the events closes the participant (its room was
        archived): nothing more is sent after it."""
        if any(event.close for event in events):
            self.final = True
            self.wake.set()
            return True
        return False

    async def write(self, data: bytes) -> None:
        """Write on the stream, one write at a time; what comes meanwhile is
        queued, and written by the stream's task."""
        outlet = self.outlet
        if outlet is None:
            return
        self.writing = True
        try:
            await outlet(data)
        finally:
            self.writing = False
            self.written_at = asyncio.get_running_loop().time()
        if self.queue:
            self.wake.set()

    def too_slow(self) -> None:
        """Its reader is too slow or away: its stream ends (its connection
        cut), and it catches up by seq when it comes back."""
        logger.warning(
            "http_too_slow room=%s conn=%s", self.room.slug, self.connection_id
        )
        self.queue = []
        self.stale = True
        if self.direct is not None:
            self.direct.cut_later()
        self.wake.set()

    def _put(self, text: str, event: bytes, key: str | None = None) -> None:
        if len(self.queue) >= MAX_QUEUED_EVENTS:
            self.too_slow()
            return
        self.numbered += 1
        self.queue.append(Queued(self.numbered, text, event, key))
        self.wake.set()

    async def restore_presence(self) -> None:
        """After the instance was reaped: record the participant again where it
        is held; otherwise (or when that fails) its next stream or poll
        welcomes it again."""
        if not self.joined:
            return
        if self.holders:
            try:
                await presence.aroom_restore(
                    room_id=self.room.pk,
                    nickname=self.ticket.nickname,
                    visitor=self.ticket.visitor,
                    user=self.user,
                    connection_id=self.connection_id,
                    instance=self.instance,
                    address=self.address,
                )
                return
            except Exception as exc:  # noqa: BLE001 - welcomed again instead
                self.failed("restore_failed", exc)
        self.joined = False
        self.stale = True
        self.wake.set()

    async def sanctioned(self, refusal: ProtocolError) -> None:
        """A ban or kick whose layer event this instance missed: its last
        frame, then out of the room."""
        if self.gone or self.final:
            return
        text = protocol.encode(refusal.frame())
        self._put(text, protocol.stream_event(text))
        self.final = True
        self.wake.set()
        self.leave_soon()

    async def restart(self) -> None:
        """This server is stopping (chat/draining.py): nothing to say first.
        The stream ends with the process, and the page's next request goes
        to an instance that is up."""

    # Streams and polls -------------------------------------------------------

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """While a stream or a poll serves the participant; once none does, it
        leaves after the grace."""
        self.holders += 1
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        try:
            yield
        finally:
            self.holders -= 1
            if not self.holders:
                self.park()

    def park(self) -> None:
        """Start the grace after which an unheld participant leaves."""
        if self.gone or self.holders:
            return
        if self.final:
            self.leave_soon()
            return
        if self.expiry is not None:
            self.expiry.cancel()
        self.expiry = asyncio.get_running_loop().call_later(
            settings.CHAT_HTTP_GRACE_SECONDS, self.leave_soon
        )

    async def stream(
        self,
        write: Callable[[bytes], Awaitable[None]],
        *,
        ended: asyncio.Event,
        heartbeat: float,
        direct: TwistedStream | None = None,
    ) -> None:
        """Write frames as they come, until the client goes (`ended`), a newer
        stream takes over, the room closes it or it falls behind; a comment
        when nothing was written for `heartbeat` seconds."""
        self.stream_number += 1
        mine = self.stream_number
        self.wake.set()  # an older stream sees it is replaced
        self.outlet = write
        self.direct = direct
        loop = asyncio.get_running_loop()
        self.written_at = loop.time()
        try:
            while True:
                if ended.is_set() or mine != self.stream_number or self.gone:
                    return
                if self.queue and not self.writing:
                    queued, self.queue = self.queue, []
                    await self.write(b"".join(q.event for q in queued))
                    continue
                if self.final or self.stale:
                    return
                self.wake.clear()
                idle = heartbeat - (loop.time() - self.written_at)
                try:
                    async with asyncio.timeout(max(idle, 0)):
                        await self.wake.wait()
                except TimeoutError:
                    if loop.time() - self.written_at >= heartbeat:
                        await self.write(HEARTBEAT)
        finally:
            if mine == self.stream_number:
                self.outlet = None
                self.direct = None

    async def poll(
        self, after: int, *, ended: asyncio.Event, hold: float
    ) -> tuple[list[Queued], str]:
        """The frames queued after number `after`, waiting up to `hold` seconds
        for one; and the cursor that acknowledges them."""
        self.queue = [q for q in self.queue if q.number > after]
        if not self.queue and not (self.final or self.stale):
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(hold):
                    while not (self.queue or ended.is_set() or self.gone):
                        await self.wake.wait()
                        self.wake.clear()
        through = self.queue[-1].number if self.queue else after
        return list(self.queue), f"{self.epoch}.{through}"

    def cursor_number(self, cursors: str | None) -> int | None:
        """The number this participant's cursor among `cursors` (comma
        separated: a poll that goes round several instances carries each
        one's) acknowledges, or None when there is none of its own."""
        for cursor in (cursors or "").split(",")[:MAX_CURSORS]:
            epoch, _dot, number = cursor.partition(".")
            if epoch == self.epoch and number.isdigit() and len(number) <= 18:
                return int(number) if int(number) <= self.numbered else None
        return None

    # Leaving -----------------------------------------------------------------

    def leave_soon(self) -> None:
        if self.leaving is None:
            self.leaving = asyncio.create_task(self.leave())

    async def leave(self, *, everywhere: bool = False) -> None:
        """Out of this process; out of the room's presence while this instance
        serves the connection (or `everywhere`: the participant's own leave)."""
        if self.gone:
            return
        self.gone = True
        if self.joined:
            metrics.CONNECTIONS.labels("http").dec()
        self.wake.set()
        if self.expiry is not None:
            self.expiry.cancel()
        get_participants().pop(self.connection_id, None)
        if self.attached:
            await get_hub().detach(self.room.pk, self)
        try:
            await presence.aroom_leave(
                connection_id=self.connection_id,
                instance=None if everywhere else self.instance,
            )
        # The heartbeat prunes the connection later (chat/liveness.py).
        except Exception as exc:  # noqa: BLE001 - logged
            self.failed("leave_failed", exc)

    def failed(self, event: str, exc: BaseException) -> None:
        logger.log(
            logging.ERROR,
            "%s room=%s instance=%s conn=%s transport=http cause=%s",
            event,
            self.room.slug,
            self.instance,
            self.connection_id,
            cause(exc),
            exc_info=not is_outage(exc),
        )


# This process's participants by connection id (one dict per event loop).
get_participants = loop_local(dict[str, HttpParticipant])


def participant_for(
    ticket: Ticket, *, room: Room, user: presence.User, address: str = ""
) -> tuple[HttpParticipant, bool]:
    """The participant of a ticket in this process, made when there is none
    (then True)."""
    participants = get_participants()
    found = participants.get(ticket.connection_id)
    if found is not None and not found.gone:
        return found, False
    made = participants[ticket.connection_id] = HttpParticipant(
        ticket=ticket, room=room, user=user, address=address
    )
    return made, True
