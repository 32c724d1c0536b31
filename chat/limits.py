"""
Rate limits that hold per visitor and per address, across sockets, reconnects
and instances.

Each limit is a moving window: at most `amount` actions in any `seconds`. Over
Redis (the first of REDIS_URL's servers, the whole Redis Cluster it reaches, or
the primary REDIS_SENTINELS name) the windows live there, counted by the
`limits` library, so that a client gains nothing by spreading its sockets over
instances or by reconnecting. Without Redis (one process) and while Redis is
out of reach, they are counted in this process.

A check happens when a frame arrives, before any database work, so refusing is
cheap, and a client that kept within a limit is never refused for frames that
queued behind a stall.
"""

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from limits import RateLimitItemPerSecond
from limits.aio.storage import (
    RedisClusterStorage,
    RedisSentinelStorage,
    RedisStorage,
)
from limits.aio.strategies import MovingWindowRateLimiter

from . import redis_topology
from .logs import cause
from .loops import loop_local

logger = logging.getLogger(__name__)

# After Redis failed a check, the process counts on its own for this long
# rather than make every frame wait for a connect that will fail.
SHARED_RETRY_SECONDS = 5.0
# Keys counted in the process, at most; past it the oldest are forgotten (a
# flood of one-off addresses must not grow the process without bound).
MAX_LOCAL_KEYS = 100_000
# Keys whose windows emptied, forgotten at most this many per hit.
STALE_PER_HIT = 2


@dataclass(frozen=True)
class Window:
    """At most `amount` actions in any `seconds`."""

    name: str
    amount: int
    seconds: int

    @classmethod
    def of(cls, name: str, burst: int, per_second: float) -> "Window":
        # A burst, then `per_second` on average: the window that allows both.
        return cls(name, burst, max(1, round(burst / per_second)))


def message_windows() -> tuple[Window, Window]:
    """Messages per visitor in a room, and per address in all rooms."""
    return (
        Window.of("message", settings.CHAT_RATE_BURST, settings.CHAT_RATE_PER_SECOND),
        Window.of(
            "address-message",
            settings.CHAT_ADDRESS_RATE_BURST,
            settings.CHAT_ADDRESS_RATE_PER_SECOND,
        ),
    )


def join_windows() -> tuple[Window, Window]:
    """Joins (and connects) per visitor, and per address."""
    return (
        Window.of("join", settings.CHAT_JOIN_BURST, settings.CHAT_JOIN_PER_SECOND),
        Window.of(
            "address-join",
            settings.CHAT_ADDRESS_JOIN_BURST,
            settings.CHAT_ADDRESS_JOIN_PER_SECOND,
        ),
    )


class TokenBucket:
    """
    One socket's own budget: `burst` actions at once, refilled at `rate` per
    second. For signals that cost little but must not flood (typing, pings).
    """

    def __init__(
        self, *, burst: float, rate: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(burst)
        self.rate = float(rate)
        self.clock = clock
        self.tokens = self.capacity
        self.updated = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class LocalWindows:
    """Moving windows counted in this process.

    (The `limits` library's own in-memory storage expires its entries with a
    thread hop per key on every pass, which costs more than the counting.)
    """

    def __init__(self) -> None:
        # Each key's hits in its window, oldest first; the keys least recently
        # hit first. A list, not a deque: a window holds at most its amount (a
        # few dozen), and an empty deque alone takes 600 bytes.
        self.hits: dict[str, list[float]] = {}
        # Each window's length, by name (a key's name starts with it).
        self.spans: dict[str, int] = {}

    def hit(self, window: Window, key: str) -> bool:
        now = time.monotonic()
        self.spans[window.name] = window.seconds
        self._forget_stale(now)
        name = f"{window.name}/{key}"
        hits = self.hits.pop(name, None)
        if hits is None:
            hits = []
            if len(self.hits) >= MAX_LOCAL_KEYS:
                del self.hits[next(iter(self.hits))]
        # Re-inserted last: the dict keeps the most recently used keys at its end.
        self.hits[name] = hits
        start = bisect.bisect_right(hits, now - window.seconds)
        if start:
            del hits[:start]
        if len(hits) >= window.amount:
            return False
        hits.append(now)
        return True

    def _forget_stale(self, now: float) -> None:
        """
        Forget the least recently hit keys whose windows are empty now, up to
        STALE_PER_HIT of them: faster than hits add keys, so a process that
        sees a stream of new visitors holds only those of the longest window.
        The hour-long soak (bench/soak.py) grew by 1 KB per connection before,
        all of it in windows of visitors long gone, up to MAX_LOCAL_KEYS.
        """
        for _ in range(STALE_PER_HIT):
            name = next(iter(self.hits), None)
            if name is None:
                return
            hits = self.hits[name]
            span = self.spans[name.partition("/")[0]]
            if hits and hits[-1] > now - span:
                return
            del self.hits[name]

    def count(self, window: Window, key: str) -> int:
        """Actions counted under `key` in the window now."""
        return len(self.hits.get(f"{window.name}/{key}", ()))


class Limiter:
    """The process's limits; shared through Redis when the chat runs over it."""

    def __init__(self) -> None:
        self.local = LocalWindows()
        self.shared = None
        self.shared_down_until = 0.0
        # Keys whose shared count was told this process's hits, and keys the
        # shared count refused, until when.
        self.synced: set[str] = set()
        self.refused_until: dict[str, float] = {}
        if settings.REDIS_LAYER_HOSTS:
            self.shared = MovingWindowRateLimiter(_redis_storage())

    async def hit(self, window: Window, key: str) -> bool:
        """
        Count one action under `key`; False when the window is full.

        Counted here first. Redis is asked only once this process alone has
        a quarter of the window's amount under the key (and is then told of
        them all at once): a round trip for every frame took Daphne at
        saturation from 120,000 to 80,000 deliveries/s (bench/run.py), and an
        honest client seldom comes near a quarter of its limit. Spread over N
        instances, a client gets at most (N - 1) quarters more than the limit.
        """
        if not self.local.hit(window, key):
            return False
        if self.shared is None:
            return True
        name = f"{window.name}/{key}"
        now = time.monotonic()
        count = self.local.count(window, key)
        if count < max(1, window.amount // 4):
            self.synced.discard(name)
            return True
        if self.refused_until.get(name, 0.0) > now:
            return False
        if now < self.shared_down_until:
            return True
        cost = 1 if name in self.synced else count
        item = RateLimitItemPerSecond(window.amount, window.seconds, window.name)
        try:
            allowed = await self.shared.hit(item, key, cost=cost)
        except Exception as exc:  # noqa: BLE001 - counted here meanwhile
            logger.warning("limits_shared_failed cause=%s", cause(exc))
            self.shared_down_until = now + SHARED_RETRY_SECONDS
            return True
        if len(self.synced) >= MAX_LOCAL_KEYS:
            self.synced.clear()  # at worst, a process's hits told twice
        self.synced.add(name)
        if not allowed:
            # Refused here, without asking again, for the time one action
            # takes to come back into the window on average.
            self.refused_until[name] = now + window.seconds / window.amount
            if len(self.refused_until) > MAX_LOCAL_KEYS:
                self.refused_until = {
                    k: t for k, t in self.refused_until.items() if t > now
                }
        return allowed

    async def hit_all(self, *checks: tuple[Window, str]) -> Window | None:
        """Count each (window, key) in turn; the first full window, or None."""
        for window, key in checks:
            if not await self.hit(window, key):
                return window
        return None


def _redis_storage() -> RedisStorage:
    if settings.REDIS_SENTINELS:
        return _sentinel_storage()
    url = urlsplit(settings.REDIS_URLS[0])
    options: dict[str, Any] = {
        "socket_timeout": 1,
        "socket_connect_timeout": 1,
        "health_check_interval": 30,
    }
    if settings.REDIS_SSL_CA_CERTS:
        options["ssl_ca_certs"] = settings.REDIS_SSL_CA_CERTS
    if settings.REDIS_CREDENTIAL_PROVIDER is not None:
        options["credential_provider"] = settings.REDIS_CREDENTIAL_PROVIDER
    storage, uri = RedisStorage, f"async+{url.geturl()}"
    if redis_topology.clustered:
        # One key per window, so each check goes to the node that holds its
        # slot; a cluster has no database numbers.
        storage, uri = RedisClusterStorage, f"async+redis+cluster://{url.netloc}"
        if url.scheme == "rediss":
            options["ssl"] = True
    return storage(uri, **_storage_arguments(), **options)


def _storage_arguments() -> dict[str, Any]:
    """What every kind of the limits library's Redis storage is given."""
    return {
        "implementation": "redispy",
        "key_prefix": f"{settings.CHAT_LAYER_PREFIX}:limits",
        "wrap_exceptions": True,
    }


def _sentinel_storage() -> RedisStorage:
    sentinels = ",".join(f"{host}:{port}" for host, port in settings.REDIS_SENTINELS)
    return RedisSentinelStorage(
        f"async+redis+sentinel://{sentinels}/{settings.REDIS_SENTINEL_MASTER}",
        **_storage_arguments(),
        socket_timeout=1,
        socket_connect_timeout=1,
        sentinel_kwargs={"socket_timeout": 1, "socket_connect_timeout": 1},
    )


# One per event loop: redis-py's asyncio connections belong to the loop that made them.
get_limiter = loop_local(Limiter)
