"""
/metrics: chat/metrics.py's figures for a Prometheus scraper, behind a token.

Answered with the health probes (chat/health.py), before the Host check and the
https redirect: a scraper asks each instance by its own address. Without
CHAT_METRICS_TOKEN the endpoint does not exist (404); with it, a request must
carry `Authorization: Bearer <token>` (401 otherwise), so that the figures are
not open to the public through the site's front door.
"""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from . import metrics


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.CHAT_METRICS_TOKEN
    if not token:
        return HttpResponse("Not found.\n", status=404, content_type="text/plain")
    scheme, _space, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = HttpResponse(
            "A bearer token (CHAT_METRICS_TOKEN) is needed.\n",
            status=401,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)
