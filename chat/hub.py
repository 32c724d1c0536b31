"""
One hub per server process: the process's single member of each room's group.

Why not a channel per socket, as Channels' generic consumers do: a group event
then costs one channel-layer delivery, one task wake-up and one database
clean-up (Channels' dispatch runs close_old_connections in a worker thread for
every event) per recipient. The hub receives each event once per process,
encodes its JSON once, and writes it to every local socket of the room; the
fan-out path never touches the database.

Events that come together (while the hub writes, or within FLUSH_SECONDS of its
last write) go out together: one write per socket for each room's lot, when the
server lets the hub write pre-framed bytes (chat/transport.py).

The hub starts the process's liveness (chat/liveness.py: its heartbeat in the
database, and the sweep of instances that stopped beating) with its first
socket, and stops it when it closes.
"""

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any, Protocol

from channels.layers import get_channel_layer
from django.conf import settings

from . import counters, draining, drops, events, metrics, protocol
from .liveness import Liveness
from .logs import cause
from .loops import loop_local
from .protocol import ProtocolError
from .transport import chunk, frames, text_frame

logger = logging.getLogger(__name__)

# Group memberships expire in channels-redis (settings.py: group_expiry, 300 s),
# so every one is renewed this often, with a margin for the clocks of the
# instances.
GROUP_RENEW_SECONDS = 60.0
# And sooner, at the next of these ticks, once the layer failed (a receive or a
# group_add): a Redis that restarted has forgotten them. This is how soon
# delivery resumes after such a restart. Renewing every room at every tick cost
# 15 % of the servers' busy time with 10,000 idle sockets in 2000 rooms
# (bench/idle.py: 1000 group_adds a second per instance).
GROUP_REFRESH_SECONDS = 2.0
RETRY_SECONDS = 0.5
# After each write round, the hub gathers the next events for this long. An idle
# hub pays nothing (the first event goes at once); a busy one gets several events
# per socket write.
FLUSH_SECONDS = 0.005
# Events (frames) waiting to be written, at most; past it new ones are dropped
# (a lot is cut where the bound falls) and clients catch up by seq. It bounds
# memory under overload: the pub/sub layer queues without limit, and the hub
# reads faster than it writes.
MAX_PENDING_EVENTS = 5000
# Typing signals give way to everything else at the bound: the waiting ones are
# dropped to make room for a message (or joined, left, deleted, an error that
# closes sockets), and a new one is never queued in their place. A lost
# stop_typing clears by itself on clients (docs/protocol.md); a lost message
# only by catching up.
EXPENDABLE = frozenset({protocol.TYPING, protocol.STOP_TYPING})


class Event:
    """One room event, encoded once for every local socket and stream."""

    __slots__ = (
        "_data",
        "_stream",
        "close",
        "exclude",
        "expendable",
        "frame",
        "key",
        "message",
        "only",
        "seq",
    )

    def __init__(
        self,
        frame: dict[str, Any],
        exclude: str | None = None,
        close: int | None = None,
        key: str | None = None,
        only: frozenset[str] | None = None,
    ) -> None:
        self.frame = frame
        self.exclude = exclude
        self.close = close
        # For these visitors' sockets and streams alone (events.room_send).
        self.only = only
        # The same on every instance (the layer event's id and the frame's
        # place in it), or None from an instance that gives none.
        self.key = key
        self.expendable = self.frame["type"] in EXPENDABLE
        is_message = self.frame["type"] == protocol.MESSAGE
        self.seq = int(self.frame["seq"]) if is_message else None
        # One ASGI message shared by every socket: the servers only read it.
        self.message = {"type": "websocket.send", "text": protocol.encode(self.frame)}
        self._data: bytes | None = None
        self._stream: bytes | None = None

    @property
    def data(self) -> bytes:
        """The event as a WebSocket frame, for sockets written directly."""
        if self._data is None:
            self._data = text_frame(self.message["text"])
        return self._data

    @property
    def stream(self) -> bytes:
        """The event as a Server-Sent Event, for the HTTP transport's streams."""
        if self._stream is None:
            self._stream = protocol.stream_event(self.message["text"], self.seq)
        return self._stream


class Batch:
    """The events of one room written together."""

    def __init__(self, events: list[Event]) -> None:
        # Messages relayed by different instances can arrive out of seq order;
        # within a batch they go out in order, in the places messages held.
        places = [i for i, e in enumerate(events) if e.seq is not None]
        in_order = sorted((events[i] for i in places), key=lambda e: e.seq or 0)
        for place, event in zip(places, in_order, strict=True):
            events[place] = event
        self.events = events
        self.excludes = {e.exclude for e in events if e.exclude}
        self.targeted = any(e.only is not None for e in events)
        seqs = [e.seq for e in events if e.seq is not None]
        self.min_seq = min(seqs) if seqs else None
        self._data: bytes | None = None
        self._stream: bytes | None = None
        self._chunk: bytes | None = None

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = frames(self.events)
        return self._data

    @property
    def stream(self) -> bytes:
        """The lot as Server-Sent Events, joined once for every stream."""
        if self._stream is None:
            self._stream = b"".join(e.stream for e in self.events)
        return self._stream

    @property
    def stream_chunk(self) -> bytes:
        """The same as one chunk of an HTTP/1.1 response, for streams written
        directly (chat/transport.py)."""
        if self._chunk is None:
            self._chunk = chunk(self.stream)
        return self._chunk

    def wanted_by(self, connection_id: str, floor: int, visitor: str) -> list[Event]:
        """The events for one socket: all of them, but its own echoes, the
        messages it already has (seq up to `floor`) and those for other
        visitors."""
        if (
            connection_id not in self.excludes
            and not self.targeted
            and (self.min_seq is None or self.min_seq > floor)
        ):
            return self.events
        return [
            e
            for e in self.events
            if e.exclude != connection_id
            and (e.seq is None or e.seq > floor)
            and (e.only is None or visitor in e.only)
        ]


class Listener(Protocol):
    """A member of a room in this process: a socket (chat/consumers.py) or an
    HTTP participant (chat/http_participants.py)."""

    connection_id: str
    visitor: str

    async def deliver(self, batch: Batch) -> None: ...

    async def restore_presence(self) -> None: ...

    async def sanctioned(self, refusal: ProtocolError) -> None: ...

    async def restart(self) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.instance: str = settings.CHAT_INSTANCE_ID
        self.rooms: dict[int, set[Listener]] = {}
        self.channel: str | None = None
        self.subscriptions: dict[int, asyncio.Future[None]] = {}
        self.pending: dict[int, list[Event]] = {}
        self.pending_count = 0
        # When the oldest pending event of each room was sent (its layer
        # event's "at"): its fan-out lag is measured once its batch went out.
        self.pending_since: dict[int, float] = {}
        # How many of the pending events are typing signals (EXPENDABLE).
        self.pending_expendable = 0
        self._wake = asyncio.Event()
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        # Set when the layer failed: the group memberships are renewed at once.
        self.layer_failed = False
        self.liveness = Liveness(instance=self.instance, sockets=self.sockets)

    def sockets(self) -> list[Listener]:
        """This process's sockets and HTTP participants in rooms, now."""
        return [consumer for local in self.rooms.values() for consumer in local]

    async def start(self) -> None:
        """Start the hub's tasks and the instance's heartbeat, once."""
        async with self._start_lock:
            if self.channel is not None:
                return
            # Before the first socket joins: its connection names this instance.
            await self.liveness.start()
            draining.install(self.sockets)
            self.channel = await self.layer.new_channel(prefix="hub")
            self._tasks = [
                asyncio.create_task(self._read(), name="hub-read"),
                asyncio.create_task(self._flush(), name="hub-flush"),
                asyncio.create_task(self._refresh_groups(), name="hub-groups"),
            ]
            logger.info("hub_started instance=%s", self.instance)

    async def close(self) -> None:
        """Stop the hub's tasks and take the instance's presence out at once."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self.rooms.clear()
        self.channel = None
        await self.liveness.stop()

    async def attach(self, room_id: int, consumer: Listener) -> None:
        await self.start()
        self.rooms.setdefault(room_id, set()).add(consumer)
        # Every socket that attaches waits for the room's subscription (made by
        # the first), so none reads history before events flow to this process.
        subscribed = self.subscriptions.get(room_id)
        if subscribed is None:
            subscribed = asyncio.ensure_future(self._group_add(room_id))
            self.subscriptions[room_id] = subscribed
        await asyncio.shield(subscribed)

    async def detach(self, room_id: int, consumer: Listener) -> None:
        local = self.rooms.get(room_id)
        if local is None:
            return
        local.discard(consumer)
        if not local:
            del self.rooms[room_id]
            self.subscriptions.pop(room_id, None)
            with contextlib.suppress(Exception):
                await self.layer.group_discard(events.group_name(room_id), self.channel)
            if room_id in self.rooms:
                # A socket attached meanwhile; its group_add may have landed
                # before this discard.
                await self._group_add(room_id)

    async def _group_add(self, room_id: int) -> None:
        try:
            await self.layer.group_add(events.group_name(room_id), self.channel)
        except Exception as exc:  # noqa: BLE001 - retried by _refresh_groups
            self.layer_failed = True
            logger.warning(
                "layer_group_add_failed room=%s cause=%s", room_id, cause(exc)
            )

    async def _read(self) -> None:
        while True:
            try:
                event = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the layer comes back
                self.layer_failed = True
                logger.warning("layer_receive_failed cause=%s", cause(exc))
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self.dispatch(event)

    def dispatch(self, event: object) -> None:
        """Queue a room event for the room's local sockets."""
        if not isinstance(event, dict):
            logger.warning("hub_bad_event type=%s", type(event).__name__)
            return
        room_id = event.get("room")
        if room_id not in self.rooms:
            return
        lost: collections.Counter[str] = collections.Counter()
        try:
            # "frame": one frame, as instances before lots sent them (a rolling
            # deploy has both).
            frames = event.get("frames") or [event["frame"]]
            exclude, close = event.get("exclude"), event.get("close")
            # "excludes": one socket per frame (coalesced typing, chat/typing.py);
            # without it (older instances) "exclude" holds for every frame.
            excludes = event.get("excludes")
            if not isinstance(excludes, list) or len(excludes) != len(frames):
                excludes = [exclude] * len(frames)
            event_id = event.get("id")
            only = event.get("only")
            targets = frozenset(map(str, only)) if isinstance(only, list) else None
            room_events: list[Event] = []
            for place, (frame, frame_exclude) in enumerate(
                zip(frames, excludes, strict=True)
            ):
                at_bound = self.pending_count + len(room_events) >= MAX_PENDING_EVENTS
                # Past the bound the rest is dropped, typing first; clients
                # catch up by seq.
                if at_bound and (
                    frame["type"] in EXPENDABLE
                    or not self._drop_typing(room_events, lost)
                ):
                    lost[drops.kind_of([frame])] += 1
                    continue
                key = f"{event_id}.{place}" if isinstance(event_id, str) else None
                room_events.append(Event(frame, frame_exclude, close, key, targets))
        except (KeyError, TypeError, ValueError, AttributeError):
            drops.dropped("hub_bad_event", "event", room=room_id)
            return
        finally:
            for kind, count in lost.items():
                drops.dropped("hub_overloaded", kind, count, room=room_id)
        if room_events:
            self.pending.setdefault(room_id, []).extend(room_events)
            self.pending_count += len(room_events)
            self.pending_expendable += sum(e.expendable for e in room_events)
            metrics.HUB_PENDING.set(self.pending_count)
            sent_at = event.get("at")
            if isinstance(sent_at, int | float):
                self.pending_since.setdefault(room_id, sent_at)
            self._wake.set()

    def _drop_typing(self, lot: list[Event], lost: collections.Counter[str]) -> bool:
        """
        Make room at the bound: drop every typing signal waiting, in the lot
        being queued too; False when there was none.

        All of them at once, not one per frame that needs a place: a scan of
        the pending events then happens once per filling of the bound, not once
        per message past it.
        """
        removed = 0
        if self.pending_expendable:
            for room_id in list(self.pending):
                queued = self.pending[room_id]
                kept = [e for e in queued if not e.expendable]
                removed += len(queued) - len(kept)
                if kept:
                    self.pending[room_id] = kept
                else:
                    del self.pending[room_id]
            self.pending_count -= removed
            self.pending_expendable = 0
        kept = [e for e in lot if not e.expendable]
        removed += len(lot) - len(kept)
        lot[:] = kept
        lost[protocol.TYPING] += removed
        return removed > 0

    async def _flush(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self.pending = self.pending, {}
            since, self.pending_since = self.pending_since, {}
            self.pending_count = 0
            self.pending_expendable = 0
            metrics.HUB_PENDING.set(0)
            delivered = 0
            for room_id, room_events in pending.items():
                try:
                    batch = Batch(room_events)
                except Exception:
                    # A bug, with its traceback each time; counted as a drop.
                    counters.add(drops.counter_name("hub_batch_failed", "event"))
                    logger.exception("hub_batch_failed room=%s", room_id)
                    continue
                for consumer in list(self.rooms.get(room_id, ())):
                    try:
                        await consumer.deliver(batch)
                    except Exception:
                        counters.add(drops.counter_name("hub_deliver_failed", "event"))
                        logger.exception("hub_deliver_failed room=%s", room_id)
                    else:
                        delivered += len(batch.events)
                if room_id in since:
                    lag = max(0.0, time.time() - since[room_id])
                    metrics.FANOUT_LAG_SECONDS.observe(lag)
            # Once per round, not per socket: a metric's lock per write would
            # cost as much as the write (chat/metrics.py).
            metrics.DELIVERIES.inc(delivered)
            await asyncio.sleep(FLUSH_SECONDS)

    async def _refresh_groups(self) -> None:
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(GROUP_REFRESH_SECONDS)
            if not self.layer_failed and loop.time() - renewed < GROUP_RENEW_SECONDS:
                continue
            # A failure during the renewal sets it again for the next tick.
            self.layer_failed = False
            renewed = loop.time()
            for room_id in list(self.rooms):
                await self._group_add(room_id)


# The hub of the running event loop (tests run several loops in turn).
get_hub = loop_local(Hub)
