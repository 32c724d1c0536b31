"""
Typing signals, coalesced per room in each process before the channel layer.

One layer event per typing frame put each one in every instance's hub channel
(at most CHAT_LAYER_CAPACITY events, past which channels-redis drops without an
error) and in every hub's pending frames: 300 sockets typing at their allowed
5 a second filled the channels, and messages were lost with the typing
(tests/system/test_typing_storm.py). Here a room's
signals go out at most once every COALESCE_SECONDS, as one layer event with the
latest state of each nickname that signalled meanwhile:

- the first signal after a quiet spell goes at once; the others wait for the
  end of the interval;
- a later signal of a nickname replaces its waiting one, so a stop_typing
  cancels a waiting typing (and the other way round), and a stop is never lost
  to coalescing: it is the state that goes;
- a typing of a nickname whose typing went out less than REPEAT_SECONDS ago is
  not repeated: the room already shows it, and a client's typing expires only
  after TYPING_EXPIRE_MS (static/chat/presence.js) without another;
- each frame keeps its typist's socket out (the layer event's "excludes").
"""

import asyncio
import math
import time

from . import drops, events, protocol
from .loops import loop_local
from .protocol import Frame

COALESCE_SECONDS = 0.25
# Below the 3 s at which a browser repeats its typing (TYPING_REPEAT_MS), so an
# honest repeat always goes out; a socket typing at its full 5 a second is
# relayed every 2-2.25 s, within the clients' 4 s expiry.
REPEAT_SECONDS = 2.0


class RoomTyping:
    """The typing signals of one room, in this process."""

    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        # nickname -> (active, connection id of the socket that signalled), in
        # the order of their latest signals.
        self.waiting: dict[str, tuple[bool, str]] = {}
        # nickname -> when its typing went out last (time.monotonic()) and
        # from which socket; only nicknames not stopped since.
        self.shown: dict[str, tuple[float, str]] = {}
        self.sent_at = -math.inf
        self.task: asyncio.Task[None] | None = None

    def signal(self, nickname: str, connection_id: str, active: bool) -> None:
        if not active:
            # The typist stopped (and clients clear a typist whose message came):
            # a typing that replaces this stop before it goes out is news, not a
            # repeat of the one shown before.
            self.shown.pop(nickname, None)
        self.waiting.pop(nickname, None)
        self.waiting[nickname] = (active, connection_id)

    def take(self, now: float) -> tuple[list[Frame], list[str]]:
        """The frames to send now, and the socket each one is not sent to."""
        frames: list[Frame] = []
        excludes: list[str] = []
        for nickname, (active, connection_id) in self.waiting.items():
            if active:
                # A repeat from the same socket; another socket's typing (a
                # page reloaded, its stop lost) goes out at once.
                last, shown_by = self.shown.get(nickname, (-math.inf, None))
                if shown_by == connection_id and now - last < REPEAT_SECONDS:
                    continue
                self.shown[nickname] = (now, connection_id)
            else:
                self.shown.pop(nickname, None)
            frames.append(protocol.typing_frame(nickname=nickname, active=active))
            excludes.append(connection_id)
        self.waiting = {}
        self.shown = {
            n: shown
            for n, shown in self.shown.items()
            if now - shown[0] < REPEAT_SECONDS
        }
        return frames, excludes

    def not_shown(self, frames: list[Frame]) -> None:
        """The layer did not take these: their typing may go again at once."""
        for frame in frames:
            if frame["type"] == protocol.TYPING:
                self.shown.pop(frame["nickname"], None)


class TypingAggregator:
    """This process's typing signals, per room."""

    def __init__(self) -> None:
        self.rooms: dict[int, RoomTyping] = {}

    def signal(
        self, room_id: int, nickname: str, connection_id: str, active: bool
    ) -> None:
        """Take a typing (active) or stop_typing signal; it is sent soon."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = RoomTyping(room_id)
        room.signal(nickname, connection_id, active)
        if room.task is None:
            room.task = asyncio.create_task(self._send(room), name=f"typing-{room_id}")

    async def _send(self, room: RoomTyping) -> None:
        # One task per room while signals wait: its sends go out one after the
        # other, so a stop never overtakes the typing it follows.
        try:
            while room.waiting:
                wait = room.sent_at + COALESCE_SECONDS - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                now = time.monotonic()
                frames, excludes = room.take(now)
                if not frames:
                    continue
                room.sent_at = now
                # A failure is counted and logged by room_send (chat/drops.py).
                sent = await events.room_send(room.room_id, *frames, excludes=excludes)
                if not sent:
                    room.not_shown(frames)
        finally:
            room.task = None
            if not room.waiting and not room.shown:
                self.rooms.pop(room.room_id, None)


# The aggregator of the running event loop (tests run several loops in turn).
get_aggregator = loop_local(TypingAggregator)


def typing_relay(
    *, room_id: int, nickname: str, connection_id: str, active: bool
) -> None:
    """
    Hand a typing (active) or stop_typing signal to this process's aggregator:
    the room gets the latest state of each typist once every COALESCE_SECONDS,
    not one layer event per frame.
    """
    get_aggregator().signal(room_id, nickname, connection_id, active)


def typing_refuse(*, room_id: int) -> None:
    """A signal over its socket's budget (chat/consumers.py) never reaches the
    aggregator: counted and logged as a drop."""
    drops.dropped("typing_over_budget", protocol.TYPING, room=room_id)
