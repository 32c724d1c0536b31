"""
Sign-in throttling for the admin (django-axes): after CHAT_LOGIN_FAILURES wrong
passwords for one username from one address, that pair is refused (429) for
CHAT_LOGIN_LOCKOUT_MINUTES, the right password included.
"""

import ipaddress
from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest

from .addresses import request_address


def client_address(request: HttpRequest) -> str | None:
    """
    The address a sign-in is counted under: the same one the chat's own limits
    use (chat/addresses.py), so that a forged X-Forwarded-For entry does not make
    every attempt come from a new address. None when it is no IP address: the
    failures are then counted under the username alone.
    """
    address = request_address(request)
    try:
        # Stored in an IP address column: anything else would fail the insert.
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


class ThrottledSignIn(AxesStandaloneBackend):
    """Axes's check before the password is; it lets calls without a request by."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            # Code that checks a password itself (the test client's login(), a
            # management command) has no client to count; every sign-in form
            # hands its request over. Axes itself would raise here.
            return None
        return super().authenticate(request, username, password, **kwargs)
