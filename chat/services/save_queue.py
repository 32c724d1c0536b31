"""
The messages of a room waiting for their save in this process, and the bound
on how many may wait.

What comes in while a lot is being saved is saved next, together, and told to
the room as one event: a message that finds the queue idle goes at once, and a
busy room pays one commit and one layer event per lot instead of per message.
What saves a lot is the caller's (chat/services/messages.py: messages_save).
Lots are saved on a thread of their own, beside Channels' database thread, and
the lots of rooms that wait at the same time go there together, in one trip
(chat/services/trips.py).
"""

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict

from django.db import transaction
from django.utils.translation import gettext as _

from .. import events, metrics, protocol
from ..loops import loop_local
from ..models import Message, Room
from ..protocol import Frame, ProtocolError
from .trips import Trips

logger = logging.getLogger(__name__)

# Messages of this process waiting for the database, at most. Past it a message
# is refused at once with `unavailable` instead of queueing: the send path's
# bound, as the send buffer is the delivery path's. Shared fairly: past it, a
# visitor with nothing waiting is still let in, up to as many again (an honest
# sender within the rate limit has at most one message waiting), so one
# visitor's burst cannot fill it for everyone else.
MAX_SAVES_WAITING = 100

# Saves run here, on a connection of their own, not on Channels' one database
# thread, where they queued behind every join and leave of the process: 60 joins
# at once from one address (tests/system/test_abuse.py, the churn) held the
# honest pair's messages 140-270 ms at that moment in four runs, 20-55 ms in
# nine since. One thread for every room (each room saves one lot at a time anyway):
# the process keeps one more connection, not one per room.
SAVES = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chat-saves")


class Draft(TypedDict):
    """A message not saved yet, in a room known to the caller."""

    nickname: str
    visitor: str
    text: str
    client_id: str
    # The signed-in sender's id, or None; moderators keep no slow mode, mutes
    # or members-only rule (chat/services/sanctions.py).
    user_id: NotRequired[int | None]
    moderator: NotRequired[bool]
    # When the sender's connection joined the room, where it is known: a kick
    # given since holds for it.
    joined: NotRequired[datetime | None]


# A draft's fate: the message and whether this save made it (False: saved
# before, a resend), or why it was not saved.
SaveResult = tuple[Message, bool] | Exception
# Saves a room's lot: messages_save(room_id=..., drafts=..., rules=...), with
# what a RulesRead read of the room for the trip (None: not read).
SaveLot = Callable[..., list[SaveResult]]
# Reads what the saves of a trip's rooms need to know of them, for all of them
# in one query (chat/services/sanctions.py: rooms_rules).
RulesRead = Callable[[list[int]], Mapping[int, object]]
# A sender's answer: its message as a frame, and whether the room was told.
Answer = tuple[Frame, bool]


class SaveQueue:
    """
    The messages of one room waiting to be saved by this process.

    Announcements go out in the order of the lots, apart from the saving: a
    slow layer (Redis unreachable for its timeout) does not hold up the next
    save.
    """

    def __init__(self, room: Room, save: SaveLot, rules: RulesRead | None) -> None:
        self.room = room
        self.save = save
        self.rules = rules
        self.waiting: list[tuple[Draft, asyncio.Future[Answer]]] = []
        self.saving: asyncio.Task[None] | None = None
        self.announcing: asyncio.Task[None] | None = None

    async def post(self, draft: Draft) -> Answer:
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.waiting.append((draft, future))
        if self.saving is None:
            self.saving = asyncio.create_task(self._save_all())
        return await future

    async def _save_all(self) -> None:
        lot: list[tuple[Draft, asyncio.Future[Answer]]] = []
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

    async def _save(
        self, lot: list[tuple[Draft, asyncio.Future[Answer]]]
    ) -> list[Answer | Exception]:
        """Each sender's answer: (frame, created), or why it was not saved."""
        started = time.monotonic()
        try:
            results = await _save_trips().request(
                RoomLot(
                    save=self.save,
                    room_id=self.room.pk,
                    drafts=[draft for draft, _future in lot],
                    rules=self.rules,
                )
            )
        except Exception as exc:  # noqa: BLE001 - each sender gets the failure
            results = [exc] * len(lot)
        metrics.SAVE_SECONDS.observe(time.monotonic() - started)
        answers: list[Answer | Exception] = []
        for result in results:
            if isinstance(result, Exception):
                answers.append(result)
            else:
                message, created = result
                if created:
                    metrics.MESSAGES_SAVED.inc()
                frame = protocol.message_frame(message, self.room.slug)
                answers.append((frame, created))
        return answers

    async def _announce(
        self,
        lot: list[tuple[Draft, asyncio.Future[Answer]]],
        answers: list[Answer | Exception],
        previous: asyncio.Task[None] | None,
    ) -> None:
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


@dataclass(frozen=True)
class RoomLot:
    """The drafts of one room that go to the database together, and what saves
    them."""

    save: SaveLot
    room_id: int
    drafts: list[Draft]
    rules: RulesRead | None = None


def _rules_read(lots: list[RoomLot]) -> dict[int, object]:
    """What each lot's rules reader says of its room, read once per reader."""
    found: dict[int, object] = {}
    readers = {lot.rules for lot in lots if lot.rules is not None}
    for read in readers:
        found.update(read([lot.room_id for lot in lots if lot.rules is read]))
    return found


def _rooms_save(lots: list[RoomLot]) -> list[list[SaveResult] | Exception]:
    """
    Each room's lot, saved by its own save, one after the other, and committed
    together; or why it could not be. A room whose save fails is rolled back
    alone (its save's transaction is a savepoint here); a commit that fails
    fails them all, and nothing is announced. What the saves need to know of
    their rooms (their rules, chat/services/sanctions.py) is read first, in
    one query for the trip: one per room's lot cost 30 % of the servers' CPU
    per delivery with 2000 clients in 400 rooms (bench/run.py --rooms 400).
    """
    saved: list[list[SaveResult] | Exception] = []
    with transaction.atomic():
        try:
            rules = _rules_read(lots)
        except Exception as exc:  # noqa: BLE001 - every room's senders get it
            return [exc] * len(lots)
        for lot in lots:
            try:
                kwargs = {"rules": rules.get(lot.room_id)} if lot.rules else {}
                saved.append(lot.save(room_id=lot.room_id, drafts=lot.drafts, **kwargs))
            except Exception as exc:  # noqa: BLE001 - that room's senders get it
                saved.append(exc)
    return saved


# Many small rooms each save a lot of one message, and each commit waits for the
# disk. 2000 clients in 400 rooms (bench/run.py --rooms 400), of 7500 messages
# at 500/s, had 3822 refused by the save bound with a trip and a commit per
# room, 2935 with one trip and a commit per room, 1680 with one of each; at
# 300/s, 647-683 before and none now.
_save_trips = loop_local(lambda: Trips(_rooms_save, executor=SAVES))


def busy(client_id: str | None = None) -> ProtocolError:
    """The refusal of a message the save bound has no room for."""
    return ProtocolError(
        protocol.UNAVAILABLE,
        _("The server is busy; that message was not sent. Try again shortly."),
        client_id or None,
    )


_save_queues = loop_local(dict[int, SaveQueue])
_saves_waiting = 0
# visitor -> how many of their messages wait to be saved.
_waiting_by_visitor: dict[str, int] = {}


def queue_admits(*, visitor: str) -> bool:
    """Whether the save bound has room for one more message of this visitor."""
    if _saves_waiting < MAX_SAVES_WAITING:
        return True
    return (
        not _waiting_by_visitor.get(visitor) and _saves_waiting < 2 * MAX_SAVES_WAITING
    )


def saves_waiting() -> int:
    """How many messages this process accepted and has not answered yet."""
    return _saves_waiting


async def aqueue_post(
    *, room: Room, draft: Draft, save: SaveLot, rules: RulesRead | None = None
) -> Answer:
    """
    Wait in the room's queue for the draft's save (by `save`, with the drafts
    that wait with it, and with what `rules` read of the room for the trip)
    and its announcement; busy() when the bound is full.
    """
    global _saves_waiting
    visitor = draft["visitor"]
    if not queue_admits(visitor=visitor):
        raise busy()
    own = _waiting_by_visitor.get(visitor, 0)
    # One queue per room for the life of the process (rooms are made by hand in
    # the admin, so they are few); it frames messages with the room as it is now.
    queues = _save_queues()
    queue = queues.get(room.pk)
    if queue is None:
        queue = queues[room.pk] = SaveQueue(room, save, rules)
    queue.room, queue.save, queue.rules = room, save, rules
    _saves_waiting += 1
    _waiting_by_visitor[visitor] = own + 1
    try:
        return await queue.post(draft)
    finally:
        _saves_waiting -= 1
        left = _waiting_by_visitor.pop(visitor) - 1
        if left:
            _waiting_by_visitor[visitor] = left
