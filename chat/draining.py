"""
A Daphne told to stop (SIGTERM: a deploy, a scale-in, App Service moving a
worker) first says so to its sockets: each is closed with CLOSE_REJOIN (1012,
"restarting, reconnect"), new ones are refused the same way, and the messages
it accepted are saved and announced (at most DRAIN_SECONDS); then it stops as
Daphne does. Left to itself, Daphne cancels its applications and drops the
sockets without a close frame. uvicorn closes its sockets with 1012 by itself,
so nothing is put in front of it.

The pages reconnect on a close at once with a jitter of their own
(static/chat/connection.js), to an instance that is up, within the presence
grace (chat/partings.py): the room hears neither a leave nor a join.
"""

import asyncio
import itertools
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol

from .services import save_queue

logger = logging.getLogger(__name__)

# How long a stopping instance waits for the saves it accepted, at most.
DRAIN_SECONDS = 5.0
POLL_SECONDS = 0.05


class Restartable(Protocol):
    async def restart(self) -> None: ...


_draining = False
_installed = False


def active() -> bool:
    """Whether this process is stopping: a socket that comes now is sent on."""
    return _draining


def install(sockets: Callable[[], Iterable[Restartable]]) -> None:
    """Put the drain in front of Twisted's SIGTERM handling, once per process;
    nothing where the reactor is not Twisted's running one (uvicorn, tests)."""
    global _installed
    reactor = sys.modules.get("twisted.internet.reactor")
    if _installed or reactor is None or not getattr(reactor, "running", False):
        return
    stop = signal.getsignal(signal.SIGTERM)
    if not callable(stop):
        return
    loop = asyncio.get_running_loop()
    _installed = True

    def on_term(signum: int, frame: FrameType | None) -> None:
        if _draining:  # a second SIGTERM: stop now
            stop(signum, frame)
            return
        loop.call_soon_threadsafe(
            lambda: asyncio.ensure_future(_drain(sockets, lambda: stop(signum, frame)))
        )

    signal.signal(signal.SIGTERM, on_term)


async def _drain(
    sockets: Callable[[], Iterable[Restartable]], stop: Callable[[], Any]
) -> None:
    global _draining
    _draining = True
    local = list(sockets())
    logger.info("draining sockets=%s", len(local))
    try:
        await asyncio.gather(
            *(socket.restart() for socket in local), return_exceptions=True
        )
        # Polled: a count, with no event to wait on.
        for _poll in itertools.count():
            if not save_queue.saves_waiting() or _poll * POLL_SECONDS >= DRAIN_SECONDS:
                break
            await asyncio.sleep(POLL_SECONDS)
        logger.info("drained saves_waiting=%s", save_queue.saves_waiting())
    finally:
        stop()
