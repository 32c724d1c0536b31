"""
The HTTP transport (chat/http_views.py, chat/http_streams.py,
chat/http_participants.py), driven through the whole ASGI application as a
browser drives it: the room page for its cookies and CSRF token, the join and
send POSTs, the event stream and the long poll; beside WebSocket clients in the
same room.
"""

import asyncio
import contextvars
import http.cookies
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit

import pytest
from channels.db import database_sync_to_async
from django.core import signing

from chat import protocol
from chat.http_participants import TICKET_SALT
from chat.hub import get_hub
from chat.models import Member, Room, Sanction
from tests.conftest import HOST, ORIGIN, TIMEOUT, Client, asgi_application
from tests.unit.factories import signed_in

pytestmark = pytest.mark.django_db(transaction=True)

CONFIG = re.compile(
    r'<script id="chat-config" type="application/json">(.*?)</script>', re.DOTALL
)
# A ticket left for the participant's own: send() uses the browser's.
OWN = object()


# A small ASGI driver ---------------------------------------------------------


class Exchange:
    """One HTTP request to the whole ASGI application, its response read as it
    comes (a stream never ends by itself)."""

    def __init__(self, method, path, *, headers=(), body=b""):
        parsed = urlsplit(path)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": parsed.path,
            "raw_path": parsed.path.encode(),
            "query_string": parsed.query.encode(),
            "root_path": "",
            "headers": [HOST, *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.incoming = asyncio.Queue()
        self.incoming.put_nowait(
            {"type": "http.request", "body": body, "more_body": False}
        )
        self.status = None
        self.headers = []
        self.body = b""
        self.complete = False
        self.changed = asyncio.Event()
        # A context of its own, as a server gives each request.
        self.task = contextvars.Context().run(
            asyncio.create_task,
            asgi_application()(scope, self.incoming.get, self._sent),
        )
        self.task.add_done_callback(lambda _task: self.changed.set())

    async def _sent(self, message):
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = [
                (name.decode().lower(), value.decode())
                for name, value in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            self.body += message.get("body", b"")
            self.complete = not message.get("more_body", False)
        self.changed.set()

    def header(self, name):
        found = [value for key, value in self.headers if key == name]
        return found[0] if found else None

    def header_values(self, name):
        return [value for key, value in self.headers if key == name]

    async def until(self, found, timeout=TIMEOUT, what="the expected answer"):
        """found()'s first true value, waiting for more of the response."""
        try:
            async with asyncio.timeout(timeout):
                while not (value := found()):
                    if self.task.done():
                        self.task.result()  # the application's error, if any
                        raise AssertionError(f"the response ended without {what}")
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {what} within {timeout} s; got {self.status} {self.body[-400:]!r}"
            ) from None
        return value

    async def response(self, timeout=TIMEOUT):
        await self.until(lambda: self.complete, timeout, "complete response")
        return self

    async def quiet(self, seconds):
        """True when the response got nothing more for `seconds`."""
        before = (self.status, len(self.body), self.complete)
        try:
            await self.until(
                lambda: (self.status, len(self.body), self.complete) != before,
                seconds,
            )
        except AssertionError:
            return (self.status, len(self.body), self.complete) == before
        return False

    def json(self):
        assert self.header("content-type") == "application/json", self.headers
        return json.loads(self.body)

    async def disconnect(self):
        """The client goes away; the application finishes."""
        self.incoming.put_nowait({"type": "http.disconnect"})
        async with asyncio.timeout(TIMEOUT):
            await self.task


@dataclass
class Event:
    """One Server-Sent Event (or comment) of a stream."""

    id: str | None = None
    data: dict | None = None
    comment: str | None = None
    retry: int | None = None


def parse_events(body):
    """The complete events in a stream's body so far."""
    events = []
    for block in body.decode().split("\n\n")[:-1]:
        event = Event()
        for line in block.split("\n"):
            name, _colon, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event.comment = value
            elif name == "id":
                event.id = value
            elif name == "data":
                event.data = json.loads(value)
            elif name == "retry":
                event.retry = int(value)
        events.append(event)
    return events


class Stream(Exchange):
    """GET .../events: read event by event."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.taken = 0

    def events(self):
        return parse_events(self.body)

    async def next_event(self, timeout=TIMEOUT):
        """The next event, comments and the retry field included."""
        events = await self.until(
            lambda: (e := self.events()) and len(e) > self.taken and e,
            timeout,
            "next event",
        )
        self.taken += 1
        return events[self.taken - 1]

    async def next_frame(self, timeout=TIMEOUT):
        """The next event that carries a frame."""
        async with asyncio.timeout(timeout):
            while (event := await self.next_event(timeout)).data is None:
                pass
        return event

    async def expect(self, kind, timeout=TIMEOUT, **match):
        """The first frame of `kind` matching `match`, skipping the others."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self.next_frame(timeout)
                if event.data["type"] == kind and all(
                    event.data.get(k) == v for k, v in match.items()
                ):
                    return event


class Browser:
    """One visitor's browser: its cookies, the room page's CSRF token, and its
    participant's ticket."""

    def __init__(self, opened):
        self.cookies = {}
        self.csrf_token = None
        self.ticket = None
        self.opened = opened

    def cookie(self):
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def request(self, method, path, *, body=b"", headers=(), kind=Exchange):
        headers = [*headers]
        if self.cookies:
            headers.append((b"cookie", self.cookie().encode()))
        exchange = kind(method, path, headers=headers, body=body)
        self.opened.append(exchange)
        return exchange

    async def open(self, slug="general"):
        """The room page: the visitor's cookies and the page's config."""
        page = await self.request("GET", f"/rooms/{slug}/").response()
        assert page.status == 200, page.body[:300]
        for header in page.header_values("set-cookie"):
            for name, morsel in http.cookies.SimpleCookie(header).items():
                self.cookies[name] = morsel.coded_value
        assert {"visitor", "csrftoken"} <= set(self.cookies)
        config = json.loads(CONFIG.search(page.body.decode()).group(1))
        self.csrf_token = config["csrfToken"]
        return config

    async def post(self, path, body, *, csrf=True, headers=()):
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        headers = [
            ORIGIN,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ]
        if csrf:
            headers.append((b"x-csrftoken", self.csrf_token.encode()))
        return await self.request("POST", path, body=body, headers=headers).response()

    async def join_answer(self, nickname, *, slug="general", last_seq=None):
        frame = {"type": "join", "nickname": nickname, "last_seq": last_seq}
        return await self.post(f"/http/rooms/{slug}/join", frame)

    async def join(self, nickname, *, slug="general", last_seq=None):
        """Join over HTTP; the welcome (its ticket kept for what follows)."""
        answer = await self.join_answer(nickname, slug=slug, last_seq=last_seq)
        assert answer.status == 200, answer.body
        welcome = answer.json()
        assert welcome["type"] == "welcome"
        self.ticket = welcome["ticket"]
        return welcome

    def ticketed(self, path, ticket=OWN, **query):
        ticket = self.ticket if ticket is OWN else ticket
        if ticket is not None:
            query = {"ticket": ticket, **query}
        query = {k: v for k, v in query.items() if v is not None}
        return f"{path}?{urlencode(query)}" if query else path

    async def send(self, frame, *, slug="general", ticket=OWN, **kwargs):
        path = self.ticketed(f"/http/rooms/{slug}/send", ticket)
        return await self.post(path, frame, **kwargs)

    def events(self, *, slug="general", ticket=OWN, last_event_id=None, **query):
        headers = [(b"accept", b"text/event-stream")]
        if last_event_id is not None:
            headers.append((b"last-event-id", str(last_event_id).encode()))
        path = self.ticketed(f"/http/rooms/{slug}/events", ticket, **query)
        return self.request("GET", path, headers=headers, kind=Stream)

    def poll(self, *, slug="general", ticket=OWN, **query):
        path = self.ticketed(f"/http/rooms/{slug}/poll", ticket, **query)
        return self.request("GET", path)


@pytest.fixture
async def browser(general):
    """A new browser that opened the room page; its requests end with the test."""
    opened = []

    async def make():
        made = Browser(opened)
        await made.open()
        return made

    yield make
    for exchange in opened:
        if not exchange.task.done():
            await exchange.disconnect()


@pytest.fixture
async def socket(general):
    """A WebSocket client; with `browser`, carrying that browser's cookies (the
    same visitor, as another tab of the same browser)."""
    clients = []

    async def make(path="/ws/rooms/general/", *, browser=None):
        client = Client(path)
        if browser is not None:
            client.ws.scope["headers"].append((b"cookie", browser.cookie().encode()))
        clients.append(client)
        connected, _code = await client.connect()
        assert connected
        return client

    yield make
    # Together: each close waits for its `left` to be told.
    await asyncio.gather(*(client.close() for client in clients))


def assert_refused(answer, code, *, client_id=None):
    """An error frame with the status its code has, as a client sees it."""
    assert answer.status == protocol.HTTP_STATUS[code], (answer.status, answer.body)
    frame = answer.json()
    assert frame["type"] == "error"
    assert frame["code"] == code, frame
    assert isinstance(frame["message"], str)
    assert frame["message"]
    assert frame.get("client_id") == client_id
    if answer.status in (429, 503):
        assert answer.header("retry-after") == str(protocol.RETRY_AFTER_SECONDS)
    return frame


# Joining and talking with sockets in the room ---------------------------------


async def test_an_http_participant_and_a_socket_hear_each_other(browser, socket):
    alice = await socket()
    await alice.join("alice")
    bob = await browser()

    welcome = await bob.join("bob")
    assert welcome["nickname"] == "bob"
    assert welcome["participants"] == 2
    assert welcome["users"] == ["alice", "bob"]
    assert welcome["last_seq"] == 0
    assert isinstance(welcome["ticket"], str)
    assert await alice.expect("joined") == {
        "type": "joined",
        "nickname": "bob",
        "participants": 2,
    }

    stream = bob.events()
    assert (await stream.next_frame()).data["type"] == "welcome"
    sent = await bob.send(
        {"type": "message", "text": "hi from http", "client_id": "h1"}
    )
    assert sent.status == 200
    saved = sent.json()
    assert saved["type"] == "message"
    assert (saved["nickname"], saved["text"], saved["client_id"]) == (
        "bob",
        "hi from http",
        "h1",
    )
    assert saved["seq"] == 1
    assert await alice.expect("message") == saved

    await alice.say("hi from ws", client_id="w1")
    echo = await alice.expect("message", client_id="w1")
    # The stream carries the room's messages in order, each with its seq as id.
    own = await stream.next_frame()
    assert (own.id, own.data) == ("1", saved)
    theirs = await stream.next_frame()
    assert (theirs.id, theirs.data) == (str(echo["seq"]), echo)
    assert echo["seq"] == 2


async def test_typing_over_http_reaches_sockets_not_its_own_stream_and_leave_is_told(
    browser, socket
):
    alice = await socket()
    await alice.join("alice")
    bob = await browser()
    await bob.join("bob")
    await alice.expect("joined", nickname="bob")
    stream = bob.events()
    await stream.expect("welcome")

    typing = await bob.send({"type": "typing"})
    assert (typing.status, typing.body) == (204, b"")
    assert await alice.expect("typing") == {"type": "typing", "nickname": "bob"}
    stopped = await bob.send({"type": "stop_typing"})
    assert stopped.status == 204
    assert await alice.expect("stop_typing") == {
        "type": "stop_typing",
        "nickname": "bob",
    }
    # What the stream gets next is alice's message: bob's own signals were
    # not sent to him (the stream does carry others' typing, below).
    await alice.say("after the typing", client_id="w1")
    assert (await stream.next_frame()).data["client_id"] == "w1"
    await alice.send({"type": "typing"})
    assert (await stream.next_frame()).data == {"type": "typing", "nickname": "alice"}

    left = await bob.send({"type": "leave"})
    assert left.status == 204
    assert await alice.expect("left") == {
        "type": "left",
        "nickname": "bob",
        "participants": 1,
    }
    # The leave ends the participant's stream, and its ticket joins no more.
    await stream.response()
    late = await bob.send({"type": "message", "text": "too late", "client_id": "h9"})
    assert_refused(late, protocol.NOT_JOINED, client_id="h9")


# The event stream -------------------------------------------------------------


async def test_the_stream_welcomes_resumes_after_last_event_id_and_keeps_alive(
    browser, socket, settings
):
    settings.CHAT_STREAM_HEARTBEAT_SECONDS = 0.2
    alice = await socket()
    await alice.join("alice")
    bob = await browser()
    await bob.join("bob")

    stream = bob.events()
    retry = await stream.next_event()
    assert (retry.retry, retry.data) == (1000, None)
    first = await stream.next_event()
    assert first.data["type"] == "welcome"
    assert first.id == "0"  # the welcome's last_seq
    assert stream.status == 200
    assert stream.header("content-type") == "text/event-stream; charset=utf-8"
    assert stream.header("cache-control") == "no-store"
    ids = []
    for text in ("one", "two", "three"):
        await alice.say(text)
        event = await stream.expect("message", text=text)
        ids.append(event.id)
    assert ids == ["1", "2", "3"]
    await stream.disconnect()

    # As a browser's EventSource resumes it.
    again = bob.events(last_event_id=ids[0])
    welcome = await again.next_frame()
    assert welcome.data["type"] == "welcome"
    assert [m["text"] for m in welcome.data["history"]] == ["two", "three"]
    assert welcome.id == "3"
    assert welcome.data["participants"] == 2
    # Nothing said meanwhile: a comment keeps the stream alive.
    keep_alive = await again.next_event(timeout=2)
    assert (keep_alive.comment, keep_alive.data) == ("keep-alive", None)
    await alice.say("four")
    # What the welcome carried does not come again.
    four = await again.next_frame()
    assert (four.id, four.data["text"]) == ("4", "four")


# The long poll ----------------------------------------------------------------


async def test_the_poll_welcomes_then_holds_until_a_message_comes(
    browser, socket, settings
):
    settings.CHAT_POLL_HOLD_SECONDS = 5
    alice = await socket()
    await alice.join("alice")
    bob = await browser()
    joined = await bob.join("bob")

    first = (await bob.poll(last_seq=joined["last_seq"]).response()).json()
    assert [f["type"] for f in first["frames"]] == ["welcome"]
    assert first["frames"][0]["users"] == ["alice", "bob"]
    cursor = first["cursor"]

    held = bob.poll(last_seq=0, cursor=cursor)
    assert await held.quiet(0.3)  # nothing to say: held
    started = time.monotonic()
    await alice.say("wake up", client_id="w1")
    answer = (await held.response()).json()
    assert time.monotonic() - started < 2  # answered by the message, not the hold
    [message] = answer["frames"]
    assert (message["type"], message["text"], message["seq"]) == (
        "message",
        "wake up",
        1,
    )
    assert answer["cursor"] != cursor

    # The same cursor again: what it did not acknowledge comes again.
    repeated = (await bob.poll(last_seq=0, cursor=cursor).response()).json()
    assert repeated["frames"] == answer["frames"]
    # A cursor this process did not hand out: welcomed again, from last_seq.
    unknown = (await bob.poll(last_seq=0, cursor="0123abcd.1").response()).json()
    [welcome] = unknown["frames"]
    assert welcome["type"] == "welcome"
    assert [m["text"] for m in welcome["history"]] == ["wake up"]


async def test_a_poll_with_nothing_to_say_answers_after_the_hold(browser, settings):
    settings.CHAT_POLL_HOLD_SECONDS = 0.3
    bob = await browser()
    await bob.join("bob")
    cursor = (await bob.poll().response()).json()["cursor"]
    started = time.monotonic()
    empty = (await bob.poll(cursor=cursor).response()).json()
    assert time.monotonic() - started >= 0.3
    assert empty == {"frames": [], "keys": [], "cursor": cursor}


# The grace after a stream ----------------------------------------------------

GRACE = 0.6


@pytest.fixture
async def streamed_away(browser, socket, settings):
    """alice on a socket; bob over HTTP, whose stream has just gone (a short
    grace), and when it went."""
    settings.CHAT_HTTP_GRACE_SECONDS = GRACE
    alice = await socket()
    await alice.join("alice")
    bob = await browser()
    await bob.join("bob")
    await alice.expect("joined", nickname="bob")
    stream = bob.events()
    await stream.expect("welcome")
    await stream.disconnect()
    # The grace runs from here.
    return alice, bob, time.monotonic()


async def test_a_participant_stays_for_the_grace_after_its_stream_then_leaves(
    streamed_away, socket
):
    alice, _bob, gone = streamed_away
    # Within the grace bob is still in the room, as a newcomer sees it.
    carol = await socket()
    welcome = await carol.join("carol")
    assert welcome["users"] == ["alice", "bob", "carol"]
    assert welcome["participants"] == 3
    left = await alice.expect("left", nickname="bob")
    assert time.monotonic() - gone >= GRACE
    assert left["participants"] == 2


async def test_a_new_stream_within_the_grace_keeps_the_participant(streamed_away):
    alice, bob, _gone = streamed_away

    again = bob.events()
    welcome = (await again.expect("welcome")).data
    assert (welcome["participants"], welcome["users"]) == (2, ["alice", "bob"])
    # Well past the grace: nobody was told bob left, nor that he came back.
    assert await alice.nothing(GRACE + 0.7)
    await alice.say("still there?", client_id="w1")
    assert (await again.expect("message")).data["client_id"] == "w1"


# Refusals ---------------------------------------------------------------------


async def _other_room():
    return await database_sync_to_async(Room.objects.create)(name="Other", slug="other")


def _forged(ticket):
    """The ticket with its payload changed and its signature kept."""
    connection_id, room_id, _nickname, visitor = signing.loads(ticket, salt=TICKET_SALT)
    changed = signing.dumps([connection_id, room_id, "mallory", visitor], salt="x")
    return f"{changed.rpartition(':')[0]}:{ticket.rpartition(':')[2]}"


@pytest.mark.parametrize(
    ("which", "code"),
    [
        ("none", protocol.NOT_JOINED),
        ("forged", protocol.FORBIDDEN),
        ("another visitor's", protocol.FORBIDDEN),
        ("another room's", protocol.FORBIDDEN),
    ],
)
async def test_a_request_without_its_own_ticket_is_refused(browser, which, code):
    bob = await browser()
    await bob.join("bob")
    user = bob
    ticket = None
    if which == "forged":
        ticket = _forged(bob.ticket)
    elif which == "another visitor's":
        user = await browser()  # another cookie, bob's ticket
        ticket = bob.ticket
    elif which == "another room's":
        await _other_room()
        ticket = (await bob.join("bob", slug="other"))["ticket"]
    frame = {"type": "message", "text": "hi", "client_id": "h1"}
    assert_refused(await user.send(frame, ticket=ticket), code, client_id="h1")
    if which == "none":
        # Nor is a message the first frame a join takes.
        answer = await user.post("/http/rooms/general/join", frame)
        assert_refused(answer, code, client_id="h1")
    assert_refused(await user.events(ticket=ticket).response(), code)
    assert_refused(await user.poll(ticket=ticket).response(), code)


async def test_posts_without_the_pages_csrf_token_or_visitor_cookie_are_refused(
    browser,
):
    bob = await browser()
    frame = {"type": "join", "nickname": "bob", "last_seq": None}
    assert_refused(
        await bob.post("/http/rooms/general/join", frame, csrf=False),
        protocol.FORBIDDEN,
    )
    await bob.join("bob")
    assert_refused(await bob.send({"type": "typing"}, csrf=False), protocol.FORBIDDEN)
    # The CSRF cookie and token, but not the room page's visitor cookie.
    del bob.cookies["visitor"]
    assert_refused(
        await bob.post("/http/rooms/general/join", frame), protocol.FORBIDDEN
    )
    assert_refused(await bob.send({"type": "typing"}), protocol.FORBIDDEN)


async def test_unknown_and_archived_rooms_are_refused_on_every_path(browser):
    await database_sync_to_async(Room.objects.create)(
        name="Old", slug="old", archived=True
    )
    bob = await browser()
    await bob.join("bob")
    frame = {"type": "join", "nickname": "bob", "last_seq": None}
    for slug, code in (
        ("nowhere", protocol.ROOM_NOT_FOUND),
        ("old", protocol.ROOM_ARCHIVED),
    ):
        assert_refused(await bob.post(f"/http/rooms/{slug}/join", frame), code)
        assert_refused(await bob.send({"type": "ping"}, slug=slug), code)
        assert_refused(await bob.events(slug=slug).response(), code)
        assert_refused(await bob.poll(slug=slug).response(), code)


async def test_the_wrong_method_is_refused(browser):
    bob = await browser()
    await bob.join("bob")
    for method, path in (
        ("GET", "/http/rooms/general/join"),
        ("GET", bob.ticketed("/http/rooms/general/send")),
        ("POST", bob.ticketed("/http/rooms/general/events")),
        ("POST", bob.ticketed("/http/rooms/general/poll")),
    ):
        headers = [(b"x-csrftoken", bob.csrf_token.encode()), ORIGIN]
        answer = await bob.request(method, path, headers=headers).response()
        assert (answer.status, answer.body) == (405, b""), (method, path)
        expected = "POST" if method == "GET" else "GET"
        assert answer.header("allow") == expected


async def test_bodies_that_are_no_frame_are_refused(browser, settings):
    bob = await browser()
    await bob.join("bob")
    assert_refused(await bob.send(b'{"type": "ping\xff"}'), protocol.INVALID_FRAME)
    assert_refused(
        await bob.post("/http/rooms/general/join", b"\xc3\x28"),
        protocol.INVALID_FRAME,
    )
    big = json.dumps({"type": "message", "text": "x" * settings.CHAT_MAX_FRAME_BYTES})
    assert_refused(await bob.send(big), protocol.FRAME_TOO_LARGE)
    assert_refused(
        await bob.post("/http/rooms/general/join", big), protocol.FRAME_TOO_LARGE
    )


@pytest.mark.parametrize(
    "where",
    [
        {"last_seq": "abc"},
        {"last_seq": "-1"},
        {"last_seq": str(2**63)},
        {"last_event_id": "1.5"},
        {"last_event_id": "abc"},
    ],
    ids=lambda where: f"{next(iter(where))}={quote(next(iter(where.values())))}",
)
async def test_a_bad_last_seq_is_refused(browser, where):
    bob = await browser()
    await bob.join("bob")
    assert_refused(await bob.events(**where).response(), protocol.INVALID_FRAME)
    if "last_seq" in where:
        assert_refused(await bob.poll(**where).response(), protocol.INVALID_FRAME)


# The same refusals on both transports -----------------------------------------


@dataclass(frozen=True)
class Refusal:
    """A frame refused the same way over a socket and over HTTP."""

    code: str
    frame: str
    # Sent first, and answered as usual.
    before: tuple = ()
    joined: bool = True
    client_id: str | None = None
    # Over HTTP a join frame goes to the join URL; but to the send URL here.
    to_send: bool = False
    settings: tuple = ()


def _message(text, client_id):
    return json.dumps({"type": "message", "text": text, "client_id": client_id})


JOIN_ALICE = json.dumps({"type": "join", "nickname": "alice", "last_seq": None})
REFUSALS = {
    "invalid_frame": Refusal(protocol.INVALID_FRAME, "not json"),
    "unknown_type": Refusal(protocol.UNKNOWN_TYPE, '{"type": "dance"}'),
    "not_joined": Refusal(
        protocol.NOT_JOINED, _message("early", "m-1"), joined=False, client_id="m-1"
    ),
    "already_joined": Refusal(
        protocol.ALREADY_JOINED,
        json.dumps({"type": "join", "nickname": "me", "last_seq": None}),
        to_send=True,
    ),
    "invalid_nickname": Refusal(
        protocol.INVALID_NICKNAME,
        json.dumps({"type": "join", "nickname": "   ", "last_seq": None}),
        joined=False,
    ),
    "nickname_taken": Refusal(protocol.NICKNAME_TAKEN, JOIN_ALICE, joined=False),
    "empty_message": Refusal(
        protocol.EMPTY_MESSAGE, _message(" \n ", "e-1"), client_id="e-1"
    ),
    "message_too_long": Refusal(
        protocol.MESSAGE_TOO_LONG, _message("x" * 2001, "l-1"), client_id="l-1"
    ),
    "rate_limited_message": Refusal(
        protocol.RATE_LIMITED,
        _message("third", "r-3"),
        before=(_message("first", "r-1"), _message("second", "r-2")),
        client_id="r-3",
        settings=(("CHAT_RATE_BURST", 2), ("CHAT_RATE_PER_SECOND", 0.01)),
    ),
    "rate_limited_join": Refusal(
        protocol.RATE_LIMITED,
        json.dumps({"type": "join", "nickname": "me", "last_seq": None}),
        before=('{"type": "leave"}',),
        settings=(("CHAT_JOIN_BURST", 1), ("CHAT_JOIN_PER_SECOND", 0.01)),
    ),
    "frame_too_large": Refusal(protocol.FRAME_TOO_LARGE, _message("x" * 70_000, "big")),
}


async def _socket_refusal(case, socket):
    client = await socket()
    if case.joined:
        await client.join("me-ws")
    for raw in case.before:
        await client.send_raw(text=raw)
        if json.loads(raw)["type"] == "message":
            assert (await client.expect("message"))["text"] == json.loads(raw)["text"]
    await client.send_raw(text=case.frame)
    return await client.expect("error")


async def _http_refusal(case, browser):
    me = await browser()
    if case.joined:
        await me.join("me-http")
    for raw in case.before:
        answer = await me.send(raw)
        assert answer.status in (200, 204), answer.body
    kind = json.loads(case.frame)["type"] if case.frame.startswith("{") else None
    if kind == "join" and not case.to_send:
        return await me.post("/http/rooms/general/join", case.frame)
    return await me.send(case.frame)


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_refused_frame_gets_the_same_error_on_both_transports(
    case, browser, socket, settings
):
    for name, value in case.settings:
        setattr(settings, name, value)
    holder = await socket()
    await holder.join("alice")  # holds the nickname another visitor asks for

    over_socket = await _socket_refusal(case, socket)
    over_http = await _http_refusal(case, browser)

    assert over_socket["code"] == case.code
    assert over_socket.get("client_id") == case.client_id
    frame = assert_refused(over_http, case.code, client_id=case.client_id)
    assert frame.get("client_id") == over_socket.get("client_id")


# Limits across transports -----------------------------------------------------


async def test_a_visitors_message_budget_is_shared_by_its_socket_and_http(
    browser, socket, settings
):
    settings.CHAT_RATE_BURST = 3
    settings.CHAT_RATE_PER_SECOND = 0.01
    carol = await browser()
    # The same browser: its page's HTTP participant and a socket of another tab.
    tab = await socket(browser=carol)
    assert (await tab.join("carol"))["participants"] == 1
    welcome = await carol.join("carol")
    assert (welcome["participants"], welcome["users"]) == (1, ["carol"])

    for i in range(2):
        await tab.say(f"ws {i}", client_id=f"w{i}")
        await tab.expect("message", client_id=f"w{i}")
    sent = await carol.send(_message("http 0", "h0"))
    assert sent.status == 200
    # The budget of three is spent, whichever transport asks next.
    refused = await carol.send(_message("http 1", "h1"))
    assert_refused(refused, protocol.RATE_LIMITED, client_id="h1")
    await tab.say("ws 2", client_id="w2")
    error = await tab.expect("error")
    assert (error["code"], error["client_id"]) == (protocol.RATE_LIMITED, "w2")
    # Another visitor in the room is not held back.
    dave = await browser()
    await dave.join("dave")
    assert (await dave.send(_message("fine", "d0"))).status == 200


# Authors' changes and moderation ------------------------------------------------


async def test_an_author_edits_and_deletes_over_http_and_sockets_see_it(
    browser, socket
):
    alice = await socket()
    await alice.join("alice")
    bob = await browser()
    await bob.join("bob")
    saved = (await bob.send({"type": "message", "text": "helo"})).json()
    await alice.expect("message", text="helo")
    edit = await bob.send({"type": "edit", "id": saved["id"], "text": "hello"})
    assert edit.status == 204
    edited = await alice.expect("edited")
    assert (edited["id"], edited["text"]) == (saved["id"], "hello")
    assert (await bob.send({"type": "delete", "id": saved["id"]})).status == 204
    assert (await alice.expect("deleted"))["ids"] == [saved["id"]]
    # Not another's.
    await alice.say("alice's own")
    theirs = await alice.expect("message", text="alice's own")
    refused = await bob.send({"type": "delete", "id": theirs["id"]})
    assert_refused(refused, protocol.FORBIDDEN)


async def test_a_banned_http_participant_is_told_its_stream_ends_and_it_cannot_rejoin(
    browser, general
):
    session = await database_sync_to_async(signed_in)(
        "Mia", staff=True, rooms=[general]
    )
    mia = Client(session_key=session)
    assert (await mia.connect())[0]
    try:
        await mia.join("Mia")
        bob = await browser()
        await bob.join("bob")
        stream = bob.events()
        await stream.expect("welcome")
        await mia.send({"type": "ban", "nickname": "bob", "seconds": 3600})
        assert (await mia.expect("moderated"))["action"] == "ban"
        told = (await stream.expect("error")).data
        assert told["code"] == protocol.BANNED
        await stream.response()  # the stream ends after it
        refused = assert_refused(await bob.join_answer("bob"), protocol.BANNED)
        assert 3590 <= refused["retry_after"] <= 3600
    finally:
        await mia.close()


async def test_slow_mode_over_http_says_when_to_send_again(browser, general):
    def slow():
        Room.objects.filter(pk=general.pk).update(slow_mode_seconds=40)

    await database_sync_to_async(slow)()
    bob = await browser()
    await bob.join("bob")
    assert (await bob.send({"type": "message", "text": "one"})).status == 200
    answer = await bob.send({"type": "message", "text": "two", "client_id": "t2"})
    assert answer.status == 429
    frame = answer.json()
    assert frame["code"] == protocol.SLOW_MODE
    assert answer.header("retry-after") == str(frame["retry_after"])
    assert 38 <= frame["retry_after"] <= 40


async def test_a_ban_the_layer_missed_ends_an_http_stream_at_the_next_beat(browser):
    bob = await browser()
    await bob.join("bob")
    stream = bob.events()
    await stream.expect("welcome")

    def ban_elsewhere():
        member = Member.objects.get(nickname="bob")
        Sanction.objects.create(
            kind=Sanction.Kind.BAN,
            room_id=member.room_id,
            nickname="bob",
            visitor=member.visitor,
        )

    await database_sync_to_async(ban_elsewhere)()
    await get_hub().liveness.beat()
    told = (await stream.expect("error")).data
    assert told["code"] == protocol.BANNED and "retry_after" not in told
    await stream.response()
    assert_refused(await bob.join_answer("bob"), protocol.BANNED)


async def test_a_participant_whose_join_post_has_no_stream_leaves_after_the_grace(
    browser, socket, settings
):
    # The grace starts in the join POST, a Django view, and runs on after its
    # answer: what it does then (the leave, its database work) must not need
    # the request's thread any more.
    settings.CHAT_HTTP_GRACE_SECONDS = 0.3
    alice = await socket()
    await alice.join("alice")
    bob = await browser()
    await bob.join("bob")
    await alice.expect("joined", nickname="bob")
    left = await alice.expect("left", nickname="bob")
    assert left["participants"] == 1
