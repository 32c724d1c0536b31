"""
This process's liveness in the database: its heartbeat, the sweep of the
instances that stopped beating (killed, or cut off), its own presence taken
out as it stops, and the bans and kicks its sockets missed the layer events of
(Redis away when they were given). The hub (chat/hub.py) starts and stops it
with its sockets.

The rooms are told who left: the presence a sweep or a prune takes out, and, as
the process stops, its own sockets'.
"""

import asyncio
import atexit
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import timedelta
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from . import metrics
from .logs import cause
from .partings import get_partings
from .protocol import ProtocolError
from .services import instances, presence, sanctions
from .services.presence import Departure

logger = logging.getLogger(__name__)

# How long a stopping instance spends telling the rooms who left, at most.
CLOSE_ANNOUNCE_SECONDS = 3.0
# The same at the exit of a process that stops without closing its sockets.
EXIT_ANNOUNCE_SECONDS = 2.0
# Each beat looks for the bans and kicks given since the one before, and this
# much before that.
SANCTIONS_OVERLAP_SECONDS = 5.0


class LocalSocket(Protocol):
    """A socket of this process in a room (chat/consumers.py's RoomConsumer)."""

    connection_id: str

    async def restore_presence(self) -> None: ...

    async def sanctioned(self, refusal: ProtocolError) -> None: ...


async def _announce(departures: list[Departure], *, at_once: bool = False) -> None:
    for departure in departures:
        await presence.aroom_leave_announce(departure, at_once=at_once)


def _remove_at_exit(instance: str) -> None:
    """
    Daphne stops without closing its sockets through the application, so no
    consumer leaves its room: take the instance's presence out as the process
    exits, and tell the rooms (best effort; otherwise the other instances' sweep
    does it after CHAT_INSTANCE_TIMEOUT_SECONDS). With a presence grace, the
    instance lapses after it instead (chat/partings.py).
    """
    grace = settings.CHAT_PRESENCE_GRACE_SECONDS
    try:
        if grace > 0:
            # A deploy or a restart: its people have the grace to come back
            # on another instance (or this one's successor) unannounced.
            instances.instance_lapse(instance=instance, after=grace)
            return
        departures = instances.instance_remove(instance=instance)
        if departures:
            asyncio.run(
                asyncio.wait_for(
                    _announce(departures, at_once=True), EXIT_ANNOUNCE_SECONDS
                )
            )
    except Exception as exc:  # noqa: BLE001 - the process is going anyway
        logger.warning("instance_remove_failed instance=%s cause=%s", instance, exc)


class Liveness:
    """The heartbeat of one instance, with the sockets it serves."""

    def __init__(
        self, *, instance: str, sockets: Callable[[], Iterable[LocalSocket]]
    ) -> None:
        self.instance = instance
        # This process's sockets in rooms, now.
        self.sockets = sockets
        self._task: asyncio.Task[None] | None = None
        self._background_tasks: set[asyncio.Task[None]] = set()
        # Bans and kicks given since then are looked for at the next beat.
        self.checked = timezone.now()

    async def start(self) -> None:
        """Beat once (the instance's row exists before any of its sockets
        joins), then every CHAT_HEARTBEAT_SECONDS; take the presence out at
        the process's exit. Again after a failed start: beats once more."""
        await database_sync_to_async(instances.instance_heartbeat)(
            instance=self.instance
        )
        if self._task is None:
            self._task = asyncio.create_task(self._beat(), name="liveness-beat")
            atexit.register(_remove_at_exit, self.instance)

    async def stop(self) -> None:
        """Stop beating and take the instance's presence out at once."""
        if self._task is None:
            return
        atexit.unregister(_remove_at_exit)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        departures = await database_sync_to_async(instances.instance_remove)(
            instance=self.instance
        )
        # Bounded: a server stopping waits for this.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                _announce(departures, at_once=True), CLOSE_ANNOUNCE_SECONDS
            )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(settings.CHAT_HEARTBEAT_SECONDS)
            await self.beat()

    async def beat(self) -> None:
        """Say this instance is alive, and sweep the ones that are not."""
        # Not in the shared database thread: behind a queue of joins and leaves
        # (hundreds of sockets closing at once) the beat came late, and another
        # instance reaped this live one with all its users.
        # Read here, in the loop: the steps run in a thread. A socket in its
        # presence grace is served still (chat/partings.py).
        serving = [socket.connection_id for socket in self.sockets()]
        serving += get_partings().connection_ids()
        steps: dict[str, Callable[[], Any]] = {
            "heartbeat": lambda: instances.instance_heartbeat(instance=self.instance),
            "sweep": instances.instances_sweep,
            "prune": lambda: instances.instance_connections_prune(
                instance=self.instance,
                serving=serving,
                older_than=timezone.now() - timedelta(minutes=1),
            ),
            "sanctions": self._sanctioned,
        }
        results = {}
        for name, step in steps.items():
            try:
                results[name] = await database_sync_to_async(
                    step, thread_sensitive=False
                )()
            except Exception as exc:  # noqa: BLE001 - the database comes back
                logger.warning(
                    "heartbeat_failed instance=%s step=%s cause=%s",
                    self.instance,
                    name,
                    cause(exc),
                )
        if "heartbeat" in results:
            metrics.HEARTBEATS.inc()
        if results.get("sanctions"):
            self._background(self._enforce(results["sanctions"]))
        departures = results.get("sweep", []) + results.get("prune", [])
        if departures:
            # Apart from the beat: with Redis slow, announcing could hold the
            # next heartbeat past the instance timeout.
            self._background(_announce(departures))
        if results.get("heartbeat"):
            # Taken for dead (the database was out of reach for too long): this
            # instance's sockets are still here, so put them back.
            logger.warning("instance_restored instance=%s", self.instance)
            for socket in list(self.sockets()):
                try:
                    await socket.restore_presence()
                except Exception as exc:  # noqa: BLE001 - the next socket's turn
                    logger.warning("restore_failed cause=%s", cause(exc))

    def _sanctioned(self) -> list[tuple[str, ProtocolError]]:
        # From a little before the last look: a ban committed as it ran, with
        # a creation time before it, is not missed.
        since = self.checked - timedelta(seconds=SANCTIONS_OVERLAP_SECONDS)
        now = timezone.now()
        found = sanctions.connections_sanctioned(instance=self.instance, since=since)
        # Only once it answered: a look that failed is made again next beat.
        self.checked = now
        return found

    async def _enforce(self, found: list[tuple[str, ProtocolError]]) -> None:
        """Bans and kicks this instance missed the layer events of: their
        sockets told and closed now."""
        local = {socket.connection_id: socket for socket in self.sockets()}
        for connection_id, refusal in found:
            socket = local.get(connection_id)
            if socket is not None:
                await socket.sanctioned(refusal)

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
