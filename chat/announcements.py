"""
Joined and left, told to the room: at once when the room is quiet, coalesced
when people come and go faster than that.

Under churn (hundreds of sockets joining and leaving a second) one layer event
and one write per member for every arrival and departure was what stalled
everyone else. Here the changes of a room in this process are gathered for up
to WINDOW_SECONDS after the last announcement and told together, in order, in
one event: one layer event and one write per member for the lot.

A nickname that joined and left within the window is still told both ways: a
member who joined meanwhile has it in its welcome's list (read from the
database) and must hear that it left.
"""

import asyncio
import time

from . import events
from .loops import loop_local
from .protocol import Frame

WINDOW_SECONDS = 0.5


class RoomAnnouncer:
    """The joined/left frames of one room waiting to be told."""

    def __init__(self, room_id: int) -> None:
        self.room_id = room_id
        # (frame, the connection that must not get it), in order
        self.waiting: list[tuple[Frame, str | None]] = []
        self.participants: int | None = None
        self.sent_at = float("-inf")
        self.flushing: asyncio.Task[None] | None = None

    async def announce(
        self, frame: Frame, exclude: str | None
    ) -> asyncio.Task[None] | None:
        """Queue the frame; the task that will send it, when it waits."""
        self.participants = frame["participants"]
        self.waiting.append((frame, exclude))
        if self.flushing is not None:
            return self.flushing
        wait = self.sent_at + WINDOW_SECONDS - time.monotonic()
        if wait <= 0:
            await self.flush()
            return None
        self.flushing = asyncio.create_task(self._flush_after(wait))
        return self.flushing

    async def _flush_after(self, wait: float) -> None:
        try:
            await asyncio.sleep(wait)
        finally:
            self.flushing = None
        await self.flush()

    async def flush(self) -> None:
        waiting, self.waiting = self.waiting, []
        self.sent_at = time.monotonic()
        if not waiting:
            return
        frames = [dict(frame) for frame, _exclude in waiting]
        # Counts taken at different moments: the newest one is what holds now.
        frames[-1]["participants"] = self.participants
        await events.room_send(
            self.room_id,
            *frames,
            excludes=[exclude for _frame, exclude in waiting],
        )


_announcers = loop_local(dict[int, RoomAnnouncer])


async def presence_announce(
    *,
    room_id: int,
    frame: Frame,
    exclude: str | None = None,
    at_once: bool = False,
    wait: bool = False,
) -> None:
    """
    Tell the room that someone joined or left (a protocol.joined_frame or
    left_frame). `at_once` for a process about to stop, which cannot wait
    for a window to close; `wait` to return only once the frame went out (a
    socket's disconnect: a server that stops waits for it, and would otherwise
    end with the frame still waiting).
    """
    if at_once:
        await events.room_send(room_id, frame, exclude=exclude)
        return
    announcers = _announcers()
    announcer = announcers.get(room_id)
    if announcer is None:
        announcer = announcers[room_id] = RoomAnnouncer(room_id)
    flushing = await announcer.announce(frame, exclude)
    if wait and flushing is not None:
        await asyncio.shield(flushing)
