"""
Moderation with real processes: two Daphne instances over one Redis and one
database. A moderator signed in through the admin on one instance bans or
mutes a visitor on the other; what the banned or muted visitor, and the rest
of the room, see. The mute is also given while Redis is down: it is a row in
the database, which every instance reads at each message.
"""

import asyncio
import contextlib
import http.client
import http.cookies
import json
import re
import secrets
import time
from urllib.parse import urlencode

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.typing import Origin

from chat import protocol
from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import session_cookie
from tests.harness.servers import Cluster, static_env

pytestmark = pytest.mark.processes

MUTE_SECONDS = 600
# What a layer send waits at most when Redis is away
# (chat/events.py: SEND_TIMEOUT_SECONDS), with room for a loaded machine.
LAYER_DOWN_ANSWER_WITHIN = 10


@pytest.fixture
def make_cluster(database, tmp_path, _collected_static):
    """Two instances on a private Redis of their own (a test may stop it)."""
    clusters = []

    def make():
        cluster = Cluster(tmp_path / f"c{len(clusters)}", database, env=static_env())
        cluster.workdir.mkdir()
        clusters.append(cluster)
        cluster.__enter__()
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


# The moderator -----------------------------------------------------------------


def make_moderator(database, room_slug):
    """A staff account named among the room's moderators, as an operator sets
    one up (manage.py, the app's models); its username and password."""
    username = f"mod-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    code = (
        "from django.contrib.auth import get_user_model; "
        "from chat.models import Room; "
        f"u = get_user_model().objects.create_user({username!r}, "
        f"password={password!r}, is_staff=True); "
        f"Room.objects.get(slug={room_slug!r}).moderators.add(u)"
    )
    database.manage("shell", "-c", code)
    return username, password


def _cookies(response):
    found = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        for name, morsel in http.cookies.SimpleCookie(header).items():
            found[name] = morsel.value
    return found


def _sign_in_sync(server, username, password):
    """The admin's sign-in form, as a browser fills it: the Cookie header value
    of the signed-in session."""
    host = f"127.0.0.1:{server.port}"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/admin/login/", headers={"Host": host})
        page = conn.getresponse()
        body = page.read().decode()
        assert page.status == 200, f"sign-in page answered {page.status}"
        csrf_cookie = _cookies(page)["csrftoken"]
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)
        assert token, "no CSRF token in the sign-in form"
        form = urlencode(
            {
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password": password,
                "next": "/admin/",
            }
        )
        conn.request(
            "POST",
            "/admin/login/?next=/admin/",
            body=form,
            headers={
                "Host": host,
                "Origin": server.origin,
                "Cookie": f"csrftoken={csrf_cookie}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 302, f"sign-in answered {answer.status}"
        session = _cookies(answer).get("sessionid")
        assert session, "signing in set no session cookie"
        return f"sessionid={session}"
    finally:
        conn.close()


async def signed_in_moderator(database, server, slug):
    username, password = await asyncio.to_thread(make_moderator, database, slug)
    return await asyncio.to_thread(_sign_in_sync, server, username, password)


async def moderate(moderator, frame):
    """Send a moderator's frame; their answer (`moderated` or an error)."""
    mark = moderator.mark()
    await moderator.send(frame)

    def answered():
        for f in moderator.frames[mark:]:
            if f["type"] == "moderated" or (
                f["type"] == "error" and not f.get("client_id")
            ):
                return f
        return None

    return await moderator.wait(
        answered, f"an answer to {frame['type']}", LAYER_DOWN_ANSWER_WITHIN
    )


# A join the server may refuse ---------------------------------------------------


async def try_join(server, slug, cookie, nickname, timeout=10):
    """Open a socket with `cookie` and join: every frame the server sent, and
    the close code it ended with (None if it stayed open past a welcome)."""
    frames = []
    async with asyncio.timeout(timeout):
        async with ws_connect(
            server.ws_url(slug),
            origin=Origin(server.origin),
            additional_headers={"Cookie": cookie},
            ping_interval=None,
            close_timeout=2,
        ) as ws:
            await ws.send(
                json.dumps({"type": "join", "nickname": nickname, "last_seq": None})
            )
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    frames.append(json.loads(raw))
                    if frames[-1]["type"] == "welcome":
                        return frames, None
            return frames, ws.close_code


def closed_with(client):
    closed = client.of_type("_closed")
    return closed[0]["code"] if closed else None


async def exchange(sender, text, *readers):
    """`sender` says `text`; it is confirmed to them and reaches every reader."""
    client_id = await sender.say(text)
    await sender.expect("message", client_id=client_id, text=text)
    for reader in readers:
        await reader.expect("message", text=text)


# Tests --------------------------------------------------------------------------


@pytest.fixture
async def moderated(make_cluster, room, database, clients):
    """A cluster of two instances, and Mia, a moderator of the room signed in
    through the admin on the first, in the room there: (cluster, mia)."""
    cluster = make_cluster()
    first = cluster.servers[0]
    cookie = await signed_in_moderator(database, first, room.slug)
    mia = await clients("Mia", room.slug, first, cookie=cookie)
    assert mia.of_type("welcome")[0]["you"]["moderator"] is True
    return cluster, mia


async def test_a_ban_on_one_instance_closes_the_visitor_on_the_other_and_holds(
    moderated, room, database, clients
):
    slug = room.slug
    cluster, mia = moderated
    a, b = cluster.servers
    bob = await clients("bob", slug, a)
    carol = await clients("carol", slug, b)
    eve_cookie = await session_cookie(b, slug)
    # Eve has a tab on each instance; the one on B is the one she chats in.
    eve = await clients("eve", slug, b, cookie=eve_cookie)
    eve_tab_a = await clients("eve", slug, a, cookie=eve_cookie)
    await mia.expect("joined", nickname="eve", participants=4)
    await exchange(eve, "hi all", mia, bob, carol, eve_tab_a)

    started = time.monotonic()
    answer = await moderate(
        mia, {"type": "ban", "nickname": "eve", "seconds": None, "reason": "abuse"}
    )
    assert answer == {
        "type": "moderated",
        "action": "ban",
        "nickname": "eve",
        "until": None,
        "everywhere": False,
    }

    # Eve's sockets on both instances are told, then closed with 4403.
    for tab in (eve, eve_tab_a):
        told = await tab.expect("error", code="banned")
        assert "abuse" in told["message"]
        assert "retry_after" not in told  # for good
        await tab.wait(lambda t=tab: closed_with(t), "the close")
        assert closed_with(tab) == protocol.CLOSE_BANNED
        # Nothing came between the refusal and the close.
        assert tab.frames[-2]["type"] == "error", tab.frames[-3:]
    closed_after = time.monotonic() - started

    # The room, on both instances, hears that she left, once.
    for client in (mia, bob, carol):
        left = await client.expect("left", nickname="eve")
        assert left["participants"] == 3
        assert "eve" not in client.users
    # Nobody else was closed or told anything of the ban.
    for client in (mia, bob, carol):
        assert not client.of_type("_closed")
        assert not [f for f in client.of_type("error") if f["code"] == "banned"]

    # Her rejoin is refused on either instance, under any nickname.
    for server, nickname in ((a, "eve"), (b, "eve"), (b, "not-eve")):
        frames, code = await try_join(server, slug, eve_cookie, nickname)
        assert [f["type"] for f in frames] == ["error"], frames
        assert frames[0]["code"] == "banned"
        assert "abuse" in frames[0]["message"]
        assert code == protocol.CLOSE_BANNED
    # The refused joins were never in the room.
    assert not mia.of_type("joined", since=mia.frames.index(answer))
    assert (
        database.count(
            "chat_member", "room_id = %s AND nickname = %s", (room.id, "not-eve")
        )
        == 0
    )

    # Everyone else chats on, across both instances.
    await exchange(carol, "carol on B after the ban", mia, bob)
    await exchange(bob, "bob on A after the ban", mia, carol)
    await exchange(mia, "moderator on A", bob, carol)
    # Someone new may take the freed nickname (a different visitor).
    newcomer = await clients("eve", slug, b)
    await carol.expect("joined", nickname="eve", participants=4)
    await exchange(newcomer, "a different eve", mia, bob, carol)
    # Her two tabs made one departure, and nobody else left.
    for client in (mia, bob, carol):
        assert [f["nickname"] for f in client.of_type("left")] == ["eve"]
    assert not cluster.tracebacks()
    print(f"\nban on A: eve's sockets closed within {closed_after:.2f}s")


async def test_a_mute_given_while_redis_is_down_holds_after_it_returns(
    moderated, room, database, clients
):
    slug = room.slug
    cluster, mia = moderated
    a, b = cluster.servers
    bob = await clients("bob", slug, a)
    carol = await clients("carol", slug, b)
    eve = await clients("eve", slug, b)
    await mia.expect("joined", nickname="eve", participants=4)
    await exchange(eve, "before the outage", mia, bob, carol)

    cluster.redis.stop()
    started = time.monotonic()
    # The mute is a database write: the moderator is answered, after at most
    # the layer send's timeout (its event to the room cannot go out).
    answer = await moderate(
        mia,
        {"type": "mute", "nickname": "eve", "seconds": MUTE_SECONDS, "reason": "spam"},
    )
    answered_after = time.monotonic() - started
    assert answer["type"] == "moderated", answer
    assert (answer["action"], answer["nickname"]) == ("mute", "eve")
    assert answer["until"].endswith("Z")

    # Eve, on the other instance, could not be told live; her next message is
    # refused there by the database, with how long the mute lasts.
    refused_id = await eve.say("can I still talk?")
    refused = await eve.expect("error", client_id=refused_id)
    assert refused["code"] == "muted"
    assert MUTE_SECONDS - 30 <= refused["retry_after"] <= MUTE_SECONDS
    assert "spam" in refused["message"]
    assert refused_id in eve.failed  # refused for good, not to be retried
    # The layer event of the mute was lost with Redis: no unprompted notice.
    assert [f for f in eve.of_type("error") if f["code"] == "muted"] == [refused]
    # Others' messages are still saved and confirmed to their senders.
    for sender in (bob, carol):
        client_id = await sender.say(f"{sender.nickname} during the outage")
        await sender.expect("message", client_id=client_id)
        assert not sender.pending
    assert all(server.alive for server in cluster.servers)

    cluster.redis.start()
    # Live delivery comes back by itself (the hubs re-add their groups): a
    # probe from A reaches B.
    mark = carol.mark()

    async def live_again():
        for index in range(60):
            await bob.say(f"probe {index}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await carol.wait(
                        lambda: any(
                            f["text"].startswith("probe")
                            for f in carol.of_type("message", since=mark)
                        ),
                        "a live probe",
                    )
                    return True
        return False

    assert await live_again(), "live delivery never came back after Redis"

    # The mute still holds on both instances: on her socket on B, and once she
    # has reloaded the page onto A (the same visitor cookie, and the page's
    # client_ids go on from where they were).
    for server in (b, a):
        if eve.server is not server:
            await eve.close()
            await eve.connect(server)
        client_id = await eve.say(f"still muted on {server.name}?")
        again = await eve.expect("error", client_id=client_id)
        assert again["code"] == "muted"
        assert 0 < again["retry_after"] <= refused["retry_after"]
    # She still reads; the others chat across both instances.
    await exchange(carol, "carol on B after the outage", mia, bob, eve)
    await exchange(bob, "bob on A after the outage", mia, carol, eve)
    # Nothing of hers was saved after the mute.
    rows = database.query(
        "SELECT text FROM chat_message WHERE room_id = %s AND nickname = %s",
        (room.id, "eve"),
    )
    assert [text for (text,) in rows] == ["before the outage"]
    assert not cluster.tracebacks()
    print(f"\nmute with Redis down: the moderator answered after {answered_after:.2f}s")
