"""
Work of this process waiting for a database thread, taken there in lots.

A request that finds its queue idle goes at once; the requests that come in
while a lot is on the thread go together in the next one, in one trip: one
thread hop and one health check of the connection for all of them, and
whatever they share read once. What does a lot is the caller's:
chat/services/presence.py (room_join_lot) for joins, chat/services/save_queue.py
for the lots of messages of many rooms.
"""

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from channels.db import database_sync_to_async

Request = TypeVar("Request")
Result = TypeVar("Result")

# Requests in one lot, at most. A lot is answered when all of it is done, so
# its first request waits for the last: a join is about 3 CPU ms in all, its
# claim a part of that (bench/joins.py, 2026-12-04: 1000 joins, 2.9 CPU-s), so
# 64 claims take under 0.2 s, and what they share is still read once per 64.
MAX_LOT = 64


class TripsStopped(Exception):
    """The queue's task was stopped (the server is going down) before this
    request's lot ran."""


class Trips(Generic[Request, Result]):
    """
    Requests waiting for one database thread (Channels' own, or `executor`):
    `do_lot` takes a lot and answers each request, with its result or why it
    failed. A request whose caller stopped waiting, but which was done all the
    same, is given to `undo` when there is one.
    """

    def __init__(
        self,
        do_lot: Callable[[list[Request]], list[Result | Exception]],
        *,
        undo: Callable[[Request], Coroutine[Any, Any, None]] | None = None,
        executor: concurrent.futures.ThreadPoolExecutor | None = None,
    ) -> None:
        self.do_lot = do_lot
        self.undo = undo
        self.executor = executor
        self.waiting: list[tuple[Request, asyncio.Future[Result]]] = []
        self.running: asyncio.Task[None] | None = None
        self.undoing: set[asyncio.Task[None]] = set()

    async def request(self, request: Request) -> Result:
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
                results = await self._trip([request for request, _f in lot])
                for (request, future), result in zip(lot, results, strict=True):
                    self._answer(request, future, result)
                lot = []
        finally:
            self.running = None
            for _request, future in lot + self.waiting:
                if not future.done():
                    future.set_exception(TripsStopped())
            self.waiting = []

    async def _trip(self, requests: list[Request]) -> list[Result | Exception]:
        if self.executor is None:
            do_lot = database_sync_to_async(self.do_lot)
        else:
            do_lot = database_sync_to_async(
                self.do_lot, thread_sensitive=False, executor=self.executor
            )
        try:
            return await do_lot(requests)
        except Exception as exc:  # noqa: BLE001 - each caller gets the failure
            return [exc] * len(requests)

    def _answer(
        self,
        request: Request,
        future: asyncio.Future[Result],
        result: Result | Exception,
    ) -> None:
        if future.done():
            # Its caller went away (a socket closed) while the lot ran: what
            # the lot did for it is taken back, where it can be.
            if self.undo is not None and not isinstance(result, Exception):
                task = asyncio.create_task(self.undo(request))
                self.undoing.add(task)
                task.add_done_callback(self.undoing.discard)
        elif isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
