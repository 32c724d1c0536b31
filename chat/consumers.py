import asyncio
import collections
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from . import (
    acts,
    admission,
    draining,
    limits,
    metrics,
    protocol,
    selectors,
    transport,
    visitors,
)
from .addresses import scope_address
from .hub import Batch, Event, get_hub
from .languages import scope_language
from .logs import cause, is_outage
from .models import Room
from .partings import get_partings
from .protocol import Frame, ProtocolError
from .services import messages, presence, save_queue
from .typing import typing_refuse, typing_relay

logger = logging.getLogger(__name__)

# A socket's messages read but not yet saved, at most (its rate limit usually
# stops it long before); past it they are refused with `unavailable`.
MAX_OUTBOX = 100


# Refusals after which the socket is closed, with this code.
REFUSALS_THAT_CLOSE = {
    protocol.BANNED: protocol.CLOSE_BANNED,
    protocol.KICKED: protocol.CLOSE_KICKED,
}


class RoomConsumer(AsyncWebsocketConsumer):
    """One socket in one room: parses frames, calls services, sends results."""

    # Room events come from the process's hub (chat/hub.py), not from a channel
    # of this socket's own.
    channel_layer_alias = None

    async def connect(self) -> None:
        # For the rest of the socket's life (its task's context): its errors
        # in the language of the visitor's pages.
        translation.activate(scope_language(self.scope))
        self.connection_id = uuid.uuid4().hex
        # None when the socket was refused its room.
        self.room: Room | None = None
        # None until the join, and again once the socket left.
        self.nickname: str | None = None
        # Messages up to this seq were sent in the welcome; live copies are skipped.
        self.floor = 0
        self.join_attempts = 0
        # The task closing this socket, once one was started (close_soon).
        self.closing: asyncio.Task[None] | None = None
        # Room events that arrive between subscribing and the welcome wait here.
        self.backlog: list[Event] | None = []
        # The server's connection, where it can be seen (chat/transport.py).
        self.socket = self.scope.get("socket")
        self.send_buffer_max = settings.CHAT_SEND_BUFFER_BYTES
        self.instance = settings.CHAT_INSTANCE_ID
        self.visitor = visitors.visitor_of(self.scope, self.connection_id)
        self.user = self.scope.get("user")
        # Typing signals and pings beyond this are dropped without a word: each
        # is relayed to the room or costs a query.
        self.signals_bucket = limits.TokenBucket(
            burst=admission.SIGNAL_BURST, rate=admission.SIGNAL_RATE
        )
        self.handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            protocol.JOIN: self.on_join,
            protocol.MESSAGE: self.on_message,
            protocol.TYPING: self.on_typing,
            protocol.STOP_TYPING: self.on_typing,
            protocol.PING: self.on_ping,
            protocol.LEAVE: self.on_leave,
            protocol.EDIT: self.on_act,
            protocol.DELETE: self.on_act,
            **{kind: self.on_act for kind in protocol.MODERATIONS},
        }
        # Whether the joined nickname's holder moderates the room (its join),
        # and when it joined (a kick given since holds for it).
        self.moderator = False
        self.joined_at: datetime | None = None
        self.address = scope_address(self.scope)
        # Messages of this socket waiting for their save, in the order they came,
        # and the task saving them.
        self.outbox: collections.deque[tuple[protocol.Message, str]] = (
            collections.deque()
        )
        self.posting: asyncio.Task[None] | None = None
        slug = self.scope["url_route"]["kwargs"].get("slug", "")
        # Accepted before anything else, refusals included (they are told with
        # a close code): the server closes a socket whose handshake the app has
        # not answered in time (Daphne: 5 s), and the room's lookup below may
        # wait behind a storm of joins on the database thread. 1000 clients
        # joining at once over two instances (bench/joins.py) had 3-298 of
        # them closed that way and trying again.
        await self.accept()
        if draining.active():
            await self.refuse(
                protocol.UNAVAILABLE,
                _("This server is restarting; reconnecting elsewhere."),
                protocol.CLOSE_REJOIN,
            )
            return
        # Before any database work: a flood of connects is refused cheaply.
        if not await self.admitted():
            await self.refuse(
                protocol.RATE_LIMITED,
                _("Too many joins just now; try again shortly."),
                protocol.CLOSE_TRY_LATER,
            )
            return
        try:
            room = (
                await database_sync_to_async(selectors.room_get)(slug=slug)
                if slug
                else None
            )
        except Exception as exc:  # noqa: BLE001 - logged by failed()
            self.failed("connect_failed", exc)
            await self.refuse(
                protocol.UNAVAILABLE,
                _("The chat cannot reach its database just now; try again."),
                1011,
            )
            return
        self.log("connect")
        try:
            self.room = admission.room_open(room, slug)
        except ProtocolError as refusal:
            await self.refuse(
                refusal.code,
                refusal.message,
                protocol.CLOSE_ROOM_NOT_FOUND
                if refusal.code == protocol.ROOM_NOT_FOUND
                else protocol.CLOSE_ROOM_ARCHIVED,
            )

    @property
    def joined_room(self) -> Room:
        """The socket's room. Frames are read, and events come, only once
        connect() accepted the socket into it."""
        if self.room is None:
            raise ProtocolError(protocol.NOT_JOINED, _("This socket has no room."))
        return self.room

    @property
    def joined_nickname(self) -> str:
        """The nickname the socket joined with; a frame that needs one before
        the join (or after the leave) is refused."""
        if self.nickname is None:
            raise ProtocolError(protocol.NOT_JOINED, _("Send a join frame first."))
        return self.nickname

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Cancelled by the server before the disconnect was read: Daphne
            # gives an application application_close_timeout (10 s) after the
            # socket closed, then cancels it, here mid-frame (a frame waiting
            # on the database). The socket leaves its room all the same, shielded
            # from a second cancel; otherwise it stayed in the hub, its nickname
            # taken and its connection kept by the heartbeat.
            if getattr(self, "nickname", None) is not None:
                await asyncio.shield(self.leave_room(grace=True))

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, in
        # the database thread: a thread hop for every frame a client sends,
        # queued behind the saves. The database calls made here go through
        # database_sync_to_async, which does the same around each of them.
        # Skipping it took the p99 at 200 clients, 1200 messages/s (bench/run.py,
        # uvicorn) from 1.6-2.1 s to 0.13-0.19 s. Before a handshake, it held the
        # socket's accept behind every join waiting on that thread.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        elif message["type"] == "websocket.connect":
            await self.websocket_connect(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        self.log("disconnect", code=code)
        # Closed without a leave frame: the person may be back within the grace.
        await self.leave_room(grace=True)

    async def leave_room(self, *, grace: bool = False) -> None:
        if self.nickname is None:
            return
        self.nickname = None
        metrics.CONNECTIONS.labels("websocket").dec()
        # A join that follows gathers the room's events until its welcome.
        self.backlog = []
        await get_hub().detach(self.joined_room.pk, self)
        if grace and get_partings().park(self.connection_id):
            return
        try:
            await presence.aroom_leave(connection_id=self.connection_id)
        # The heartbeat prunes the connection later (chat/liveness.py).
        except Exception as exc:  # noqa: BLE001 - logged by failed()
            self.failed("leave_failed", exc)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        if self.room is None:
            return
        frame = None
        try:
            frame = protocol.parse_client_frame(text_data)
            if self.nickname is None and frame.type != protocol.JOIN:
                raise ProtocolError(
                    protocol.NOT_JOINED,
                    _("Send a join frame first."),
                    getattr(frame, "client_id", None) or None,
                )
            await self.handlers[frame.type](frame)
        except Exception as exc:  # noqa: BLE001 - answered by refuse_frame()
            await self.refuse_frame(exc, getattr(frame, "client_id", None))

    async def refuse_frame(self, exc: Exception, client_id: str | None) -> None:
        """Answer a frame that failed: its error, or `unavailable` for a bug or
        an outage (logged). A refused message names its client_id."""
        if not isinstance(exc, ProtocolError):
            self.failed("frame_failed", exc)
            exc = ProtocolError(
                protocol.UNAVAILABLE,
                _("The server could not handle that just now; try again."),
            )
        exc.client_id = exc.client_id or client_id or None
        metrics.REFUSALS.labels(exc.code).inc()
        await self.send_frame(exc.frame())
        close = REFUSALS_THAT_CLOSE.get(exc.code)
        if close is not None and self.closing is None:
            # Also where this instance missed the moderator's layer event: the
            # database refused the join or the message.
            self.close_soon(close)
            self.leaving = asyncio.create_task(self.leave_room())

    # Frames -----------------------------------------------------------------

    async def on_join(self, frame: protocol.Join) -> None:
        if self.nickname is not None:
            raise ProtocolError(protocol.ALREADY_JOINED, _("You have already joined."))
        if self.join_attempts and not await self.admitted():
            raise admission.join_refusal()
        self.join_attempts += 1
        # Events are subscribed to before history is read, so nothing falls
        # between the two; live copies of what history carried are skipped.
        hub = get_hub()
        await hub.attach(self.joined_room.pk, self)
        joined = None
        joined_at = timezone.now()
        try:
            joined, welcome = await presence.aroom_welcome(
                room=self.joined_room,
                nickname=frame.nickname,
                last_seq=frame.last_seq,
                visitor=self.visitor,
                user=self.user,
                connection_id=self.connection_id,
                instance=self.instance,
                max_bytes=self.max_send_bytes(),
                address=self.address,
            )
            await self.send_frame(welcome)
        except BaseException:
            # Nothing of a failed join stays: no held nickname, no announcement.
            await hub.detach(self.joined_room.pk, self)
            self.backlog = []
            if joined is not None:
                await asyncio.shield(
                    presence.aroom_join_undo(connection_id=self.connection_id)
                )
            raise
        # From here on the connection is recorded: disconnect() takes it out.
        self.nickname = joined.nickname
        metrics.JOINS.labels("websocket").inc()
        metrics.CONNECTIONS.labels("websocket").inc()
        self.moderator = joined.moderator
        self.joined_at = joined_at
        self.floor = welcome["last_seq"]
        backlog, self.backlog = self.backlog, None
        if backlog:
            await self.deliver(Batch(backlog))
        await presence.aroom_join_announce(
            room_id=self.joined_room.pk,
            presence=joined,
            connection_id=self.connection_id,
        )
        self.log("join", arrived=joined.arrived)

    def max_send_bytes(self) -> int:
        """The largest frame this socket's server sends (its own limit, or ours)."""
        limit = settings.CHAT_MAX_FRAME_BYTES
        server_limit = self.socket.max_send_bytes() if self.socket else None
        return min(limit, server_limit) if server_limit else limit

    async def admitted(self) -> bool:
        """Whether this visitor and address may join (or connect) once more."""
        refused = await admission.join_refused(
            visitor=self.visitor, address=self.address
        )
        if refused is not None:
            self.log("join_refused", level=logging.WARNING, limit=refused)
        return refused is None

    async def on_message(self, frame: protocol.Message) -> None:
        await admission.message_check(
            room_id=self.joined_room.pk,
            visitor=self.visitor,
            address=self.address,
            client_id=frame.client_id,
        )
        if len(self.outbox) >= MAX_OUTBOX:
            raise save_queue.busy(frame.client_id)
        # Saved apart from the reading of frames, so the next frame is read (and
        # counted) on arrival; one at a time and in order, as before: a socket
        # has one message in the process's save bound, and a fast sender is
        # held back by its own saves rather than crowding out others.
        self.outbox.append((frame, self.joined_nickname))
        if self.posting is None:
            self.posting = asyncio.create_task(self.post_all())

    async def post_all(self) -> None:
        try:
            while self.outbox:
                await self.post(*self.outbox[0])
                self.outbox.popleft()
        finally:
            self.posting = None

    async def post(self, frame: protocol.Message, nickname: str) -> None:
        # Saved under the nickname it came with, even if the socket left since.
        try:
            message, delivered = await messages.amessage_post(
                room=self.joined_room,
                nickname=nickname,
                visitor=self.visitor,
                text=frame.text,
                client_id=frame.client_id,
                user_id=visitors.account_of(self.user),
                moderator=self.moderator,
                joined=self.joined_at,
            )
        except Exception as exc:  # noqa: BLE001 - answered by refuse_frame()
            await self.refuse_frame(exc, frame.client_id)
            return
        if not delivered:
            # The layer did not take it (Redis away) or it was a resend: the
            # sender still gets the saved copy; others catch up by seq.
            await self.send_frame(message)

    async def on_typing(self, frame: protocol.Signal) -> None:
        if not self.signals_bucket.take():
            # Over the socket's signal budget: the room never hears of it (a
            # lost stop clears on clients after TYPING_EXPIRE_MS).
            typing_refuse(room_id=self.joined_room.pk)
            return
        typing_relay(
            room_id=self.joined_room.pk,
            nickname=self.joined_nickname,
            connection_id=self.connection_id,
            active=frame.type == protocol.TYPING,
        )

    async def on_act(self, frame: acts.Act) -> None:
        answer = await acts.act(
            acts.Actor(
                room=self.joined_room,
                visitor=self.visitor,
                user=self.user,
                address=self.address,
            ),
            frame,
        )
        if answer is not None:
            await self.send_frame(answer)

    async def on_leave(self, frame: protocol.Signal) -> None:
        await self.leave_room()

    async def on_ping(self, frame: protocol.Signal) -> None:
        if not self.signals_bucket.take():
            return
        last_seq = await database_sync_to_async(selectors.room_last_seq)(
            room_id=self.joined_room.pk
        )
        await self.send_frame(protocol.pong_frame(last_seq=last_seq))

    # Output -----------------------------------------------------------------

    async def deliver(self, batch: Batch) -> None:
        """Room events from the hub (chat/hub.py), already encoded."""
        if self.backlog is not None:
            self.backlog.extend(batch.events)
            return
        if self.nickname is None:  # left the room, its leave still under way
            return
        if self.closing is not None:  # its close is on its way: nothing after it
            return
        events = batch.wanted_by(self.connection_id, self.floor, self.visitor)
        if not events:
            return
        try:
            sent = await transport.deliver(
                self.socket,
                self.base_send,
                events,
                limit=self.send_buffer_max,
                framed=batch if events is batch.events else None,
            )
        except Exception as exc:  # noqa: BLE001 - the socket went away
            # A socket closing as the room's events reach it (uvicorn refuses a
            # send after the client's close): its disconnect follows, and it
            # catches up by seq if it comes back.
            self.log("send_failed", level=logging.DEBUG, cause=cause(exc))
            return
        if sent is transport.Delivery.TOO_SLOW:
            await self.drop_slow_reader()
            return
        for event in events:
            if event.close:
                self.close_soon(event.close)
                # Out of the room now, not once the client answers the close:
                # a kicked or banned nickname is free at once, and the room
                # is told it left.
                self.leaving = asyncio.create_task(self.leave_room())
                return

    async def restore_presence(self) -> None:
        """
        Record this socket's presence again after the instance was reaped (taken
        for dead while cut off from the database). Where that cannot be done,
        the socket is closed with CLOSE_REJOIN: the client reconnects, joins
        with its cursor and resends what was not confirmed. Never a socket left
        open that is no longer in its room.
        """
        if self.nickname is None:
            return
        try:
            await presence.aroom_restore(
                room_id=self.joined_room.pk,
                nickname=self.nickname,
                visitor=self.visitor,
                user=self.user,
                connection_id=self.connection_id,
                instance=self.instance,
                address=self.address,
            )
        except Exception as exc:  # noqa: BLE001 - the client rejoins instead
            if isinstance(exc, ProtocolError):
                # Someone else took the nickname meanwhile.
                await self.send_frame(protocol.error_frame(exc.code, exc.message))
            else:
                self.failed("restore_failed", exc)
            self.close_soon(protocol.CLOSE_REJOIN)
            await self.leave_room()

    async def sanctioned(self, refusal: ProtocolError) -> None:
        """A ban or kick whose layer event this instance missed (the heartbeat
        found it): told, and closed."""
        if self.closing is None and self.nickname is not None:
            await self.refuse_frame(refusal, None)

    async def restart(self) -> None:
        """This server is stopping (chat/draining.py): closed with the code
        that says to reconnect, to an instance that is up."""
        if self.closing is None:
            self.close_soon(protocol.CLOSE_REJOIN)
        if self.closing is not None:
            await self.closing

    async def drop_slow_reader(self) -> None:
        """Close a socket that stopped reading; it catches up when it reconnects."""
        self.log("too_slow", level=logging.WARNING, buffered=self.socket.buffered())
        self.socket.cut_later()
        self.close_soon(protocol.CLOSE_TOO_SLOW)
        # Not awaited here: this runs inside the hub's fan-out, which must not
        # wait for the database. The task marks the socket gone before the hub's
        # next round, so it is closed once.
        self.leaving = asyncio.create_task(self.leave_room())

    def close_soon(self, code: int) -> None:
        """
        Close from a task of its own: called from the hub's tasks, which must not
        wait on a socket (uvicorn's close waits while the socket's buffer is full).
        """
        self.closing = asyncio.create_task(self.close(code=code))

    async def close(self, code: int | None = None, reason: str | None = None) -> None:
        # Through the server's connection where it is seen: Daphne's own close
        # refuses the standard codes other than 1000 (1011, 1012, 1013), and a
        # socket meant to reconnect was left open (chat/transport.py).
        if self.socket is not None and code is not None:
            await self.socket.close(self.base_send, code)
        else:
            await super().close(code=code, reason=reason)

    async def send_frame(self, frame: Frame) -> None:
        # Error replies, pongs and the welcome answer the client's own frames: a
        # client that sends without reading could have them buffered without
        # end. Past the bound it is dropped as deliver() drops it, and nothing
        # more is sent to it (its close is under way; the servers refuse to
        # send after it).
        if getattr(self, "leaving", None) is not None:
            return
        socket = self.socket
        if socket is not None and socket.buffered() > self.send_buffer_max:
            await self.drop_slow_reader()
            return
        await self.send(text_data=protocol.encode(frame))

    async def refuse(self, code: str, message: str, close_code: int) -> None:
        await self.send_frame(protocol.error_frame(code, message))
        await self.close(code=close_code)

    def log(
        self,
        event: str,
        level: int = logging.INFO,
        exc_info: bool = False,
        **fields: object,
    ) -> None:
        """One line per event; never the text of a message."""
        extra = " ".join(f"{key}={value}" for key, value in fields.items())
        if self.room is not None:
            room = self.room.slug
        else:  # the room asked for, before (or without) finding it
            room = self.scope["url_route"]["kwargs"].get("slug") or "-"
        logger.log(
            level,
            "%s room=%s instance=%s conn=%s %s",
            event,
            room,
            self.instance,
            self.connection_id,
            extra,
            exc_info=exc_info,
        )

    def failed(self, event: str, exc: BaseException) -> None:
        self.log(
            event,
            logging.ERROR,
            exc_info=not is_outage(exc),
            cause=cause(exc),
        )
