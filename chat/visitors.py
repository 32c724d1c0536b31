"""
Who a visitor is, without a row in the database for each one.

The room page gives every browser a `visitor` cookie: a random id, signed with
SECRET_KEY so that it cannot be made up or changed. The WebSocket reads it back
from its handshake. Signed-in people (moderators in the admin) are known by
their session instead. Only visitor_key()'s hash of either is stored.
"""

import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.http import HttpRequest, HttpResponse

COOKIE_NAME = "visitor"
# Signing salt: a value signed for anything else is not a visitor id.
COOKIE_SALT = "chat.visitors"
# A year: the nickname and resends stay the visitor's across visits. An older
# cookie is refused (and the room page gives a new one).
COOKIE_AGE_SECONDS = 60 * 60 * 24 * 365


def signer() -> signing.TimestampSigner:
    # SECRET_KEY (and its fallbacks while keys are rotated) with a salt of its
    # own; read here and in the room page, so both sides always agree.
    return signing.TimestampSigner(salt=COOKIE_SALT)


def cookie_id(value: str | None) -> str | None:
    """The visitor id in a cookie's value, or None when it is missing, forged
    or too old."""
    if not value:
        return None
    try:
        return signer().unsign(value, max_age=COOKIE_AGE_SECONDS)
    except signing.BadSignature:  # SignatureExpired is one too
        return None


def has_cookie(request: HttpRequest) -> bool:
    return cookie_id(request.COOKIES.get(COOKIE_NAME)) is not None


def give_cookie(response: HttpResponse) -> None:
    """A new visitor id on the response. HttpOnly: page scripts never need it;
    SameSite=Lax: other sites' requests do not carry it."""
    response.set_cookie(
        COOKIE_NAME,
        signer().sign(secrets.token_urlsafe(18)),
        max_age=COOKIE_AGE_SECONDS,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def visitor_of(scope: Mapping[str, Any], connection_id: str) -> str:
    """
    The stored form of the visitor behind a WebSocket: their session when they
    have one, else their visitor cookie, else the connection itself (a client
    without cookies is a new visitor on every socket).
    """
    return scope_visitor(scope) or visitor_key(connection_id)


def _known_visitor(session_key: str | None, cookie: str | None) -> str | None:
    if session_key:
        return visitor_key(session_key)
    visitor_id = cookie_id(cookie)
    if visitor_id is not None:
        # Prefixed: an id can never equal a session key's hash input.
        return visitor_key(f"cookie:{visitor_id}")
    return None


def scope_visitor(scope: Mapping[str, Any]) -> str | None:
    """The visitor of an ASGI scope by session or cookie; None for neither."""
    return _known_visitor(
        getattr(scope.get("session"), "session_key", None),
        scope.get("cookies", {}).get(COOKIE_NAME),
    )


def visitor_of_request(request: HttpRequest) -> str | None:
    """The same for a Django request (the HTTP transport's POSTs): one visitor
    whether they chat over a socket or over HTTP."""
    return _known_visitor(
        getattr(request, "session", None) and request.session.session_key,
        request.COOKIES.get(COOKIE_NAME),
    )


def visitor_key(secret: str) -> str:
    """A stable, non-reversible id for a session key (or a connection's own id)."""
    return hashlib.sha256(f"visitor:{secret}".encode()).hexdigest()[:40]


def account_of(user: AbstractBaseUser | AnonymousUser | None) -> int | None:
    """The id of the signed-in account behind a visitor, or None: what a
    message's author and a ban are known by besides the visitor."""
    return user.pk if user is not None and user.is_authenticated else None
