"""
Who is signed in behind a socket or an HTTP stream: Channels' auth middleware,
without its trip to the database thread for a handshake that carries no
session (nobody can be signed in without one).
"""

from typing import Any

from channels.auth import AuthMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser


class SessionUserMiddleware(AuthMiddleware):
    """scope["user"]: the session's user, or AnonymousUser at once for no session."""

    async def resolve_scope(self, scope: dict[str, Any]) -> None:
        # Most visitors have only the visitor cookie (chat/visitors.py). The
        # trip waited behind every join on that thread: 1000 clients joining
        # at once over two instances (bench/joins.py) were accepted only as
        # the joins ahead of them ended, and Daphne closed the ones that
        # waited past its handshake timeout.
        if scope["session"].session_key is None:
            scope["user"]._wrapped = AnonymousUser()
            return
        await super().resolve_scope(scope)


def auth_stack(inner: Any) -> CookieMiddleware:
    """Channels' AuthMiddlewareStack, with SessionUserMiddleware."""
    return CookieMiddleware(SessionMiddleware(SessionUserMiddleware(inner)))
