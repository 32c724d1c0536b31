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

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.db import connection, transaction
from django.http import JsonResponse

from .models import Room

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database():
    # A query on a chat table: it also fails when migrations were not applied.
    # Waiting on a lock (PostgreSQL) or a busy file (SQLite) is cut short; the
    # connect timeout itself is set with the database settings.
    timeout_ms = int(CHECK_TIMEOUT_SECONDS * 1000)
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            Room.objects.exists()
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout")
            (usual_ms,) = cursor.fetchone()
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            try:
                Room.objects.exists()
            finally:
                cursor.execute(f"PRAGMA busy_timeout = {int(usual_ms)}")
    else:
        Room.objects.exists()


async def _layer_round_trip(layer):
    async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
        # new_channel() subscribes on the pub/sub layer: the ping cannot be missed.
        channel = await layer.new_channel(prefix="readyz")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "readyz.ping", "token": token})
        while (await layer.receive(channel)).get("token") != token:
            pass


def _check_channel_layer():
    # A layer instance and event loop of the probe's own, in this request's
    # worker thread: channels-redis lets one receive() at a time wait on a layer
    # instance, and the hub's receive holds the shared instance while it waits
    # for room events. Closing the loop closes the probe's Redis connections.
    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    asyncio.run(_layer_round_trip(layer))


CHECKS = {"database": _check_database, "channel_layer": _check_channel_layer}


def readyz(request):
    results = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - every failure is "not ready"
            logger.warning("readyz_failed dependency=%s cause=%r", name, exc)
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
