"""
Health probes for load balancers and App Service.

/healthz: liveness, the process answers; it touches nothing else.
/readyz: readiness, a database query and a channel-layer round trip (and a PING
of each Redis, when there are several shards), each with a short timeout; 503
names the dependency that failed. One run of the checks at a time per process,
its result shared for REUSE_SECONDS: a burst of probes costs one query and one
round trip, not one each.

They are answered by a middleware placed first, before anything checks the Host
header or redirects to https: probes come from the platform's internal addresses,
and ALLOWED_HOSTS stays closed to those for the rest of the site.
"""

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse

from . import redis_topology
from .logs import cause
from .metrics_endpoint import metrics_view
from .models import Room

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0
# /readyz is open to anyone (it answers before the Host check): without sharing,
# every concurrent probe opened a database connection and two threads of its own.
REUSE_SECONDS = 1.0
# The clock results are dated by (a module attribute, so tests can move it).
clock = time.monotonic


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    # A query on a chat table: it also fails when migrations were not applied.
    try:
        if connection.vendor == "postgresql":
            with transaction.atomic(), connection.cursor() as cursor:
                # The server stops the query too, rather than run on after the
                # probe gave up.
                ms = int(CHECK_TIMEOUT_SECONDS * 1000)
                cursor.execute(f"SET LOCAL statement_timeout = {ms}")
                Room.objects.exists()
        else:
            Room.objects.exists()
    finally:
        connection.close()  # this check's thread's own connection


async def _layer_round_trip(layer: Any) -> None:
    async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
        # new_channel() subscribes on the pub/sub layer: the ping cannot be missed.
        channel = await layer.new_channel(prefix="readyz")
        token = uuid.uuid4().hex
        # Through a group of its own, as room events go, not a send to the
        # channel: over several Redis servers channels-redis 4.3's core layer
        # sends a channel's own messages to the server its whole name hashes
        # to and reads them from the one its first part hashes to (Channels
        # issue 1492), and the probe failed about half the time with two.
        group = f"readyz.{token}"
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "readyz.ping", "token": token})
        while (await layer.receive(channel)).get("token") != token:
            pass
        # Within the deadline too; a check that failed leaves the group to
        # expire (the layer's group_expiry).
        await layer.group_discard(group, channel)


def _check_channel_layer() -> None:
    # A layer instance and an event loop of the check's own: channels-redis lets
    # one receive() at a time wait on a layer instance, and the hub's receive
    # holds the shared one while it waits for room events. Closing the loop
    # closes the check's Redis connections.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    asyncio.run(_layer_round_trip(layer))
    redis_topology.ping_shards(CHECK_TIMEOUT_SECONDS)


CHECKS = {"database": _check_database, "channel_layer": _check_channel_layer}


# A check given up on whose thread still runs, by name: no second one is
# started beside it, so a hung dependency holds one thread per check at most.
_abandoned: dict[str, Future] = {}


def _within_deadline(name: str, check: Callable[[], None]) -> None:
    """
    Run a check in a thread of its own and give up on it after the deadline. A
    connect can hang for longer than a probe waits: a SQLite file another
    process holds makes it wait its 20 s busy timeout, a silent PostgreSQL host
    its connect_timeout. The abandoned thread ends when that wait does.
    """
    previous = _abandoned.get(name)
    if previous is not None and not previous.done():
        raise TimeoutError("the previous check has not answered yet")
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
    future = pool.submit(check)
    try:
        return future.result(timeout=CHECK_TIMEOUT_SECONDS + 0.5)
    except FuturesTimeout:
        _abandoned[name] = future
        raise TimeoutError(f"no answer within {CHECK_TIMEOUT_SECONDS} s") from None
    finally:
        pool.shutdown(wait=False)


def _run_checks() -> dict[str, str]:
    results = {}
    for name, check in CHECKS.items():
        try:
            _within_deadline(name, check)
        except Exception as exc:  # noqa: BLE001 - every failure is "not ready"
            logger.warning("readyz_failed dependency=%s cause=%s", name, cause(exc))
            results[name] = f"failed: {type(exc).__name__}"
        else:
            results[name] = "ok"
    return results


class _Shared:
    """The last run's results and when it ended; the lock is held by the run in
    flight, and probes that come meanwhile wait for its results."""

    lock = threading.Lock()
    results: dict[str, str] | None = None
    ended = 0.0


def _shared_results() -> dict[str, str]:
    with _Shared.lock:
        fresh = clock() - _Shared.ended < REUSE_SECONDS
        if _Shared.results is None or not fresh:
            _Shared.results = _run_checks()
            _Shared.ended = clock()
        return _Shared.results


def forget_results() -> None:
    """The next probe runs the checks again."""
    with _Shared.lock:
        _Shared.results = None


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: object) -> None:
    # Results under other databases or channel layers say nothing about these
    # (tests change them in the process).
    if setting in ("DATABASES", "CHANNEL_LAYERS"):
        forget_results()


def readyz(request: HttpRequest) -> JsonResponse:
    results = dict(_shared_results())
    failed = [name for name, result in results.items() if result != "ok"]
    body: dict[str, object] = {"status": "fail" if failed else "ok", "checks": results}
    if failed:
        body["failing"] = failed
    return JsonResponse(body, status=503 if failed else 200)


# /metrics (chat/metrics_endpoint.py) is asked for the same way: by address.
PROBES = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}


class HealthCheckMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            response = probe(request)
            # A cached answer would hide a change of state.
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
