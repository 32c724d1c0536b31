"""
Health probes for load balancers and App Service.

/healthz: liveness, the process answers; it touches nothing else.
/readyz: readiness, a database query and a channel-layer round trip.

They are answered by a middleware placed first, before anything checks the Host
header or redirects to https: probes come from the platform's internal addresses,
and ALLOWED_HOSTS stays closed to those for the rest of the site.
"""

import asyncio
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.http import JsonResponse

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 2.0


def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _layer_round_trip():
    layer = get_channel_layer()
    channel = await layer.new_channel(prefix="readyz")
    token = str(time.monotonic_ns())

    async def round_trip():
        await layer.send(channel, {"type": "readyz.ping", "token": token})
        while (await layer.receive(channel)).get("token") != token:
            pass

    await asyncio.wait_for(round_trip(), CHECK_TIMEOUT_SECONDS)


def _check_channel_layer():
    async_to_sync(_layer_round_trip)()


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
            return probe(request)
        return self.get_response(request)
