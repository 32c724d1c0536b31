"""A visitor's identity without a session row (chat/visitors.py)."""

import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.core import signing
from django.test import Client as HttpClient

from chat import visitors
from tests.conftest import HOST, ORIGIN, Client, asgi_application


class Tab(Client):
    """A socket of a browser tab that sends this Cookie header."""

    def __init__(self, cookie, path="/ws/rooms/general/"):
        headers = [HOST, ORIGIN]
        if cookie:
            headers.append((b"cookie", cookie.encode()))
        self.ws = WebsocketCommunicator(asgi_application(), path, headers=headers)


@pytest.fixture
async def tabs(general):
    opened = []

    async def open_tab(cookie):
        tab = Tab(cookie)
        opened.append(tab)
        connected, _code = await tab.connect()
        assert connected
        return tab

    yield open_tab
    for tab in opened:
        await tab.close()


def room_page_cookie():
    """The Cookie header a browser sends after opening the room page once."""
    response = HttpClient().get("/rooms/general/")
    assert response.status_code == 200
    return f"visitor={response.cookies['visitor'].value}"


@pytest.mark.django_db
def test_cookieless_room_page_views_create_no_session_rows(client):
    before = Session.objects.count()

    responses = [HttpClient().get("/rooms/general/") for _ in range(200)]

    assert [r.status_code for r in responses] == [200] * 200
    assert Session.objects.count() == before == 0
    ids = {visitors.cookie_id(r.cookies["visitor"].value) for r in responses}
    assert len(ids) == 200
    assert None not in ids


@pytest.mark.django_db
def test_the_cookie_is_signed_httponly_lax_long_lived_and_secure_over_https(
    client, settings
):
    settings.SESSION_COOKIE_SECURE = False
    plain = client.get("/rooms/general/").cookies["visitor"]
    settings.SESSION_COOKIE_SECURE = True
    secure = HttpClient().get("/rooms/general/").cookies["visitor"]

    assert plain["httponly"]
    assert plain["samesite"] == "Lax"
    assert int(plain["max-age"]) >= 60 * 60 * 24 * 365
    assert not plain["secure"]
    assert secure["secure"]


@pytest.mark.django_db
def test_a_forged_or_expired_cookie_is_replaced(client, monkeypatch):
    client.cookies["visitor"] = "made-up-id"
    forged = client.get("/rooms/general/")
    assert visitors.cookie_id(forged.cookies["visitor"].value) is not None

    long_ago = time.time() - visitors.COOKIE_AGE_SECONDS - 60
    with monkeypatch.context() as patch:
        patch.setattr(signing.time, "time", lambda: long_ago)
        old = visitors.signer().sign("old-id")
    assert visitors.cookie_id(old) is None
    client.cookies["visitor"] = old
    assert "visitor" in client.get("/rooms/general/").cookies


@pytest.mark.django_db(transaction=True)
async def test_the_same_cookie_is_the_same_visitor_across_two_sockets(tabs):
    cookie = await database_sync_to_async(room_page_cookie)()

    first = await tabs(cookie)
    await first.join("carol")
    second = await tabs(cookie)
    welcome = await second.join("carol")

    # A second tab of the same browser, not someone else taking the name.
    assert welcome["nickname"] == "carol"
    assert welcome["participants"] == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "cookie",
    [
        None,
        "visitor=forged-id",
        # Signed, but for something else than a visitor id.
        "visitor=" + signing.TimestampSigner(salt="another.use").sign("x"),
    ],
    ids=["none", "forged", "other-salt"],
)
async def test_without_a_valid_cookie_it_is_another_visitor(tabs, cookie):
    owner = await database_sync_to_async(room_page_cookie)()
    first = await tabs(owner)
    await first.join("carol")

    other = await tabs(cookie)
    await other.send({"type": "join", "nickname": "carol", "last_seq": None})

    assert (await other.expect("error"))["code"] == "nickname_taken"


def test_a_session_comes_before_the_cookie():
    signed = visitors.signer().sign("abc")

    class Session:
        session_key = "k" * 32

    with_session = {"session": Session(), "cookies": {"visitor": signed}}
    cookie_only = {"cookies": {"visitor": signed}}

    assert visitors.visitor_of(with_session, "conn") == visitors.visitor_key("k" * 32)
    assert visitors.visitor_of(cookie_only, "conn") == visitors.visitor_key(
        "cookie:abc"
    )
    assert visitors.visitor_of({}, "conn") == visitors.visitor_key("conn")
