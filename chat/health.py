"""
Health probes for load balancers and App Service.

/healthz: liveness, the process answers; it touches nothing else.
/readyz: readiness, a database query and a channel-layer round trip, each with
a short timeout; 503 names the dependency that failed.

They are answered by a middleware placed first, before anything checks the Host
header or redirects to https: probes come from the platform's internal addresses,
and ALLOWED_HOSTS stays closed to those for the rest of the site.
"""

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.db import connection, transaction
from django.http import JsonResponse

from .models import Room

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def cause(exc):
    """
    An exception as one log line: its class and message. Not repr(): redis-py's
    exceptions leave their message out of it, and psycopg's messages span lines.
    """
    return f"{type(exc).__name__}({' '.join(str(exc).split())!r})"


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database():
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


async def _layer_round_trip(layer):
    async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
        # new_channel() subscribes on the pub/sub layer: the ping cannot be missed.
        channel = await layer.new_channel(prefix="readyz")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "readyz.ping", "token": token})
        while (await layer.receive(channel)).get("token") != token:
            pass


def _check_channel_layer():
    # A layer instance and an event loop of the check's own: channels-redis lets
    # one receive() at a time wait on a layer instance, and the hub's receive
    # holds the shared one while it waits for room events. Closing the loop
    # closes the check's Redis connections.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    asyncio.run(_layer_round_trip(layer))


CHECKS = {"database": _check_database, "channel_layer": _check_channel_layer}


def _within_deadline(check):
    """
    Run a check in a thread of its own and give up on it after the deadline. A
    connect can hang for longer than a probe waits: a SQLite file another
    process holds makes it wait its 20 s busy timeout, a silent PostgreSQL host
    its connect_timeout. The abandoned thread ends when that wait does.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
    try:
        return pool.submit(check).result(timeout=CHECK_TIMEOUT_SECONDS + 0.5)
    except FuturesTimeout:
        raise TimeoutError(f"no answer within {CHECK_TIMEOUT_SECONDS} s") from None
    finally:
        pool.shutdown(wait=False)


def readyz(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            _within_deadline(check)
        except Exception as exc:  # noqa: BLE001 - every failure is "not ready"
            logger.warning("readyz_failed dependency=%s cause=%s", name, cause(exc))
            results[name] = f"failed: {type(exc).__name__}"
        else:
            results[name] = "ok"
    failed = [name for name, result in results.items() if result != "ok"]
    body = {"status": "fail" if failed else "ok", "checks": results}
    if failed:
        body["failing"] = failed
    return JsonResponse(body, status=503 if failed else 200)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            response = probe(request)
            # A cached answer would hide a change of state.
            response["Cache-Control"] = "no-store"
            return response
        return self.get_response(request)
