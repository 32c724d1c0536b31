"""
The joins of this process waiting for the database thread, taken in lots.

A join that finds the queue idle goes at once; the joins that come in while a
lot is on the thread go together in the next one, in one trip. What joins a
lot is the caller's (chat/services/presence.py: room_join_lot), which reads
what the lot's joins share once for all of them.
"""

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from channels.db import database_sync_to_async

Request = TypeVar("Request")
Result = TypeVar("Result")

# Joins in one lot, at most. A lot is answered when all of it is done, so its
# first joiner waits for the last: 64 joins are ~0.3 s on the database thread
# (bench/joins.py), and the online list is still read once per 64 joins, not
# once per join.
MAX_LOT = 64


class QueueStopped(Exception):
    """The queue's task was stopped (the server is going down) before this
    join's lot ran."""


class JoinQueue(Generic[Request, Result]):
    """
    Requests waiting for one worker on the database thread: `join_lot` takes a
    lot and answers each request, with its result or why it failed. A request
    whose caller stopped waiting, but which joined all the same, is given to
    `undo`.
    """

    def __init__(
        self,
        join_lot: Callable[[list[Request]], list[Result | Exception]],
        undo: Callable[[Request], Coroutine[Any, Any, None]],
    ) -> None:
        self.join_lot = join_lot
        self.undo = undo
        self.waiting: list[tuple[Request, asyncio.Future[Result]]] = []
        self.running: asyncio.Task[None] | None = None
        self.undoing: set[asyncio.Task[None]] = set()

    async def join(self, request: Request) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.waiting.append((request, future))
        if self.running is None:
            self.running = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        lot: list[tuple[Request, asyncio.Future[Result]]] = []
        try:
            while self.waiting:
                lot, self.waiting = self.waiting[:MAX_LOT], self.waiting[MAX_LOT:]
                results = await self._join([request for request, _f in lot])
                for (request, future), result in zip(lot, results, strict=True):
                    self._answer(request, future, result)
                lot = []
        finally:
            self.running = None
            for _request, future in lot + self.waiting:
                if not future.done():
                    future.set_exception(QueueStopped())
            self.waiting = []

    async def _join(self, requests: list[Request]) -> list[Result | Exception]:
        try:
            return await database_sync_to_async(self.join_lot)(requests)
        except Exception as exc:  # noqa: BLE001 - each caller gets the failure
            return [exc] * len(requests)

    def _answer(
        self,
        request: Request,
        future: asyncio.Future[Result],
        result: Result | Exception,
    ) -> None:
        if future.done():
            # Its caller went away (the socket closed) while the lot ran: what
            # the lot recorded for it is taken back.
            if not isinstance(result, Exception):
                task = asyncio.create_task(self.undo(request))
                self.undoing.add(task)
                task.add_done_callback(self.undoing.discard)
        elif isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
