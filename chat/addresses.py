"""
The client's network address, as the limits count it.

Behind App Service's front end (and Application Gateway before it) the peer of
every connection is a proxy; each proxy appends the address it saw to
X-Forwarded-For. Only the entries the trusted proxies appended can be believed:
whatever stands to their left came from the client and can be anything. So the
address is the entry CHAT_PROXY_HOPS places from the right, never the left-most
one (which Daphne's --proxy-headers would take).
"""

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest


def _host(entry: str) -> str | None:
    """One X-Forwarded-For entry without its port; None when it is no address."""
    entry = entry.strip()
    if entry.startswith("["):  # [v6]:port
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:  # v4:port (App Service adds the port)
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


def client_address(peer: str | None, forwarded_for: Iterable[str]) -> str:
    """
    The address to count a client under: `peer` is the connection's own remote
    address, `forwarded_for` the X-Forwarded-For header values in order.
    """
    hops = settings.CHAT_PROXY_HOPS
    if hops:
        entries = [e for value in forwarded_for for e in value.split(",")]
        if len(entries) >= hops:
            found = _host(entries[-hops])
            if found is not None:
                return found
    return peer or "unknown"


def scope_address(scope: Mapping[str, Any]) -> str:
    """client_address() of an ASGI connection scope."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
    ]
    return client_address(peer, forwarded)


def request_address(request: HttpRequest) -> str:
    """client_address() of a Django request."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    return client_address(
        request.META.get("REMOTE_ADDR"), [forwarded] if forwarded else []
    )
