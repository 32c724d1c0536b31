"""
Which WebSocket handshakes reach the chat: the Host and Origin checks.

A browser lets any page open a WebSocket to any site, with the visitor's cookies,
and says which page asked in the Origin header. So a handshake is accepted only
from the site's own pages, by the rule Django's CSRF check applies to a form
POST: the Origin is the one the browser sends from a page of this site (scheme,
host and port of the Host header), or one listed in CSRF_TRUSTED_ORIGINS. Both
checks come before the socket is accepted: a refusal is a 403 to the handshake.
"""

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]

# Values from the network are cut to this in the log.
LOGGED_CHARS = 80


def _header(scope: Scope, name: bytes) -> str | None:
    """A header that occurs exactly once; None when missing or repeated."""
    values = [value for key, value in scope.get("headers", ()) if key == name]
    if len(values) != 1:
        return None
    return values[0].decode("latin1")


def _host(scope: Scope) -> str | None:
    """The Host header, or the server's address as Django falls back to."""
    host = _header(scope, b"host")
    if host is None and scope.get("server"):
        name, port = scope["server"][0], scope["server"][1]
        host = name if port in (None, 80, 443) else f"{name}:{port}"
    return host


def allowed_host(host: str | None) -> bool:
    """The host is one of ALLOWED_HOSTS, checked as Django checks HTTP requests."""
    if not host:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


def is_secure(scope: Scope) -> bool:
    """
    Whether the browser reached the site over TLS: the proxy's header named by
    SECURE_PROXY_SSL_HEADER when it is there (TLS ends at the front end, which
    talks plain ws to the server), the connection's own scheme otherwise; the
    same answer as Django's request.is_secure().
    """
    proxy = settings.SECURE_PROXY_SSL_HEADER
    # A request header's META name: HTTP_X_FORWARDED_PROTO is x-forwarded-proto.
    if proxy and proxy[0].startswith("HTTP_"):
        meta_name, secure_value = proxy
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-")
        value = _header(scope, name.encode("latin1"))
        if value is not None:
            return value.split(",")[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def site_origin(scope: Scope, host: str) -> str:
    """The Origin a browser sends from a page of this site served on `host`."""
    return f"{'https' if is_secure(scope) else 'http'}://{host.lower()}"


def trusted_origin(origin: str) -> bool:
    """Listed in CSRF_TRUSTED_ORIGINS, with its *.domain wildcards as Django
    reads them."""
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        trusted_parts = urlsplit(trusted)
        if (
            "*" in trusted_parts.netloc
            and trusted_parts.scheme == parts.scheme
            and is_same_domain(parts.netloc, trusted_parts.netloc.replace("*", "", 1))
        ):
            return True
    return False


def refusal(scope: Scope) -> str | None:
    """Why the handshake is refused, or None when it is accepted."""
    host = _host(scope)
    if host is None or not allowed_host(host):
        return "host"
    origin = _header(scope, b"origin")
    # No Origin: not a browser page. Refused as before: a bot sets the header to
    # the site's address (docs/protocol.md).
    if origin is None:
        return "origin"
    if origin.lower() == site_origin(scope, host) or trusted_origin(origin):
        return None
    return "origin"


class SiteOriginValidator:
    """ASGI middleware: WebSocket handshakes from this site's pages only."""

    def __init__(self, application: ASGIApp) -> None:
        self.application = application

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "websocket":
            raise ValueError("SiteOriginValidator is for WebSocket connections only")
        reason = refusal(scope)
        if reason is None:
            return await self.application(scope, receive, send)
        # One line, no traceback: a misconfigured host or a foreign page shows
        # here, and scanners cannot fill the log with more than a line each.
        logger.info(
            "websocket_refused reason=%s host=%.*r origin=%.*r",
            reason,
            LOGGED_CHARS,
            _header(scope, b"host"),
            LOGGED_CHARS,
            _header(scope, b"origin"),
        )
        return await WebsocketDenier()(scope, receive, send)
