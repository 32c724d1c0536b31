"""
The Content-Security-Policy header (django-csp), with the page's own WebSocket
address added to connect-src.

CSP Level 3 lets 'self' cover ws:// and wss:// of the page's own host, and
current browsers follow it; browsers from before that change read 'self' as the
page's http(s) scheme only and would block the chat's socket. The explicit
ws(s)://<host> source costs nothing in the others.
"""

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase


def socket_source(request: HttpRequest) -> str | None:
    """The origin of the room page's WebSocket (static/chat/connection.js builds it
    from location.host), or None for a request whose Host is not allowed."""
    try:
        host = request.get_host()
    except DisallowedHost:
        return None
    return f"{'wss' if request.is_secure() else 'ws'}://{host}"


class SiteCSPMiddleware(CSPMiddleware):
    def get_policy_parts(
        self,
        request: HttpRequest,
        response: HttpResponseBase,
        report_only: bool = False,
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        source = socket_source(request)
        if source is not None:
            update = dict(parts.update or {})
            update["connect-src"] = [*update.get("connect-src", ()), source]
            parts.update = update
        return parts
