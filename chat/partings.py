"""
The grace a closed socket's place in its room outlives it by
(CHAT_PRESENCE_GRACE_SECONDS). A reload, a network blip or a deploy closes the
socket without a leave frame; its connection stays recorded for the grace, so
the person's nickname stays in the online list and a socket that joins with it
meanwhile, on this instance or another, is a return (presence.Claim.arrived is
false): the room hears neither a leave nor a join. When the grace runs out the
connection leaves as any other (presence.aroom_leave), and the room hears the
leave only if no other connection holds the nickname by then.

A process that stops keeps its connections for the grace too
(chat/liveness.py: instances.instance_lapse).
"""

import asyncio
import logging

from django.conf import settings

from .logs import cause
from .loops import loop_local
from .services import presence

logger = logging.getLogger(__name__)


class Partings:
    """This process's closed sockets whose connections wait out the grace."""

    def __init__(self) -> None:
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def park(self, connection_id: str) -> bool:
        """Keep the connection for the grace, then take it out; False when
        there is no grace (the caller takes it out now)."""
        grace = settings.CHAT_PRESENCE_GRACE_SECONDS
        if grace <= 0:
            return False
        self.timers[connection_id] = asyncio.get_running_loop().call_later(
            grace, self._leave, connection_id
        )
        return True

    def connection_ids(self) -> list[str]:
        """The connections kept now: this instance still serves them (its
        heartbeat's prune leaves them alone)."""
        return list(self.timers)

    def _leave(self, connection_id: str) -> None:
        self.timers.pop(connection_id, None)
        task = asyncio.create_task(self._leave_now(connection_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _leave_now(self, connection_id: str) -> None:
        try:
            await presence.aroom_leave(connection_id=connection_id)
        # The heartbeat prunes the connection later (chat/liveness.py).
        except Exception as exc:  # noqa: BLE001 - logged
            logger.error("leave_failed conn=%s cause=%s", connection_id, cause(exc))


get_partings = loop_local(Partings)
