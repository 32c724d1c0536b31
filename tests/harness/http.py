"""The HTTP requests a browser makes of a server on loopback: the room page (for
its visitor cookie) and the history API."""

import asyncio
import http.cookies
import urllib.error
import urllib.request
from email.message import Message
from typing import Protocol


class Served(Protocol):
    """What a server launcher offers a client: its base URL."""

    @property
    def http(self) -> str: ...


Response = tuple[int, Message, bytes]


def http_get_sync(url: str, cookie: str | None = None, timeout: float = 10) -> Response:
    """Status, headers and body of one GET (an error status is an answer too)."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(  # noqa: S310 - loopback http, checked above
        url, headers={"Accept": "application/json"}
    )
    if cookie:  # a Cookie header value, as session_cookie() gives it
        request.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


async def http_get(
    url: str, cookie: str | None = None, timeout: float = 10
) -> Response:
    return await asyncio.to_thread(http_get_sync, url, cookie, timeout)


async def session_cookie(server: Served, slug: str) -> str:
    """A visitor's identity, as a browser gets it by opening the room page: the
    Cookie header value that carries it (`visitor=...`, chat/visitors.py)."""
    status, headers, _body = await http_get(f"{server.http}/rooms/{slug}/")
    assert status == 200, f"room page answered {status}"
    for header in headers.get_all("Set-Cookie") or []:
        cookie = http.cookies.SimpleCookie(header)
        if "visitor" in cookie:
            return f"visitor={cookie['visitor'].coded_value}"
    raise AssertionError("the room page set no visitor cookie")
