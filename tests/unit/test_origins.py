"""
Which WebSocket handshakes reach the chat (chat/origins.py), and the answer to a
path that is no room's (chat/routing.py): in process through the whole ASGI
application (tests/system/test_origins.py: against a real Daphne).
"""

import logging

import pytest
from channels.testing import WebsocketCommunicator

from chat import origins
from tests.conftest import TIMEOUT, Client, asgi_application

SITE = "127.0.0.1:8000"

# In-process sockets: the hub and the database thread close after the test.
pytestmark = pytest.mark.django_db(transaction=True)


async def handshake(*headers, path="/ws/rooms/general/"):
    """Whether the whole application accepts a handshake with these headers."""
    ws = WebsocketCommunicator(
        asgi_application(),
        path,
        headers=[(name.encode(), value.encode()) for name, value in headers],
    )
    connected, _code = await ws.connect(timeout=TIMEOUT)
    await ws.disconnect()
    return connected


# The Origin must be the site's own, scheme and port included -----------------


@pytest.mark.parametrize(
    ("origin", "accepted"),
    [
        (f"http://{SITE}", True),
        ("http://127.0.0.1:9999", False),  # another port of the same host
        (f"https://{SITE}", False),  # another scheme
        ("http://127.0.0.1", False),  # port 80
        ("http://localhost:8000", False),  # another allowed host
        ("null", False),  # a sandboxed frame, a file:// page
    ],
)
async def test_only_the_sites_own_origin_is_accepted(general, origin, accepted):
    assert await handshake(("host", SITE), ("origin", origin)) is accepted


async def test_a_host_outside_allowed_hosts_is_refused(general, caplog):
    caplog.set_level(logging.INFO, logger="chat.origins")

    # Its Origin matches its Host: a page of evil.example whose name was made to
    # resolve here. And a Host that is not the one the Origin names.
    rebound = await handshake(
        ("host", "evil.example"), ("origin", "http://evil.example")
    )
    mismatched = await handshake(("host", "evil.example"), ("origin", f"http://{SITE}"))

    assert (rebound, mismatched) == (False, False)
    lines = [r.getMessage() for r in caplog.records if r.name == "chat.origins"]
    assert len(lines) == 2
    assert lines[0].startswith("websocket_refused reason=host host='evil.example'")


async def test_without_an_origin_it_is_refused_as_before(general):
    assert await handshake(("host", SITE)) is False


async def test_two_origin_headers_are_refused(general):
    own = ("origin", f"http://{SITE}")
    assert await handshake(("host", SITE), own, own) is False


async def test_behind_the_tls_front_end_the_origin_is_https(general, settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    proxied = [("host", "chat.example.com"), ("x-forwarded-proto", "https")]

    assert await handshake(*proxied, ("origin", "https://chat.example.com"))
    assert not await handshake(*proxied, ("origin", "http://chat.example.com"))
    # Without the front end's header the page was plain http.
    assert not await handshake(
        ("host", "chat.example.com"), ("origin", "https://chat.example.com")
    )


def test_a_tls_connection_without_the_proxy_header_is_https(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    scope = {
        "type": "websocket",
        "scheme": "wss",
        "headers": [(b"host", b"chat.example.com"), (b"origin", b"")],
    }

    def with_origin(origin):
        scope["headers"][1] = (b"origin", origin)
        return origins.refusal(scope)

    assert with_origin(b"https://chat.example.com") is None
    assert with_origin(b"http://chat.example.com") == "origin"


async def test_csrf_trusted_origins_are_accepted_too(general, settings):
    # Application Gateway in front: the browser's origin is the gateway's name,
    # the Host header the app's own.
    settings.ALLOWED_HOSTS = ["chat-prod.azurewebsites.net"]
    settings.CSRF_TRUSTED_ORIGINS = [
        "https://chat.example.com",
        "https://*.example.org",
    ]
    app = [("host", "chat-prod.azurewebsites.net"), ("x-forwarded-proto", "https")]

    assert await handshake(*app, ("origin", "https://chat.example.com"))
    assert await handshake(*app, ("origin", "https://rooms.example.org"))
    assert not await handshake(*app, ("origin", "http://chat.example.com"))
    assert not await handshake(*app, ("origin", "https://chat.example.com:8443"))
    assert not await handshake(*app, ("origin", "https://example.com"))


# Any path gets a clean answer ------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/notws/", "/", "/ws", "/admin/", "/rooms/general/", "/ws/rooms/a/b/"]
)
async def test_a_path_that_is_no_room_gets_room_not_found(make_client, caplog, path):
    client = await make_client(path)

    error = await client.expect("error")
    close = await client.ws.receive_output(timeout=2)

    assert error["code"] == "room_not_found"
    assert close == {"type": "websocket.close", "code": 4404}
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == []


async def test_an_unrouted_path_with_a_foreign_origin_is_refused(general):
    client = Client("/notws/", origin=(b"origin", b"http://evil.example"))
    connected, _code = await client.connect()
    assert not connected
