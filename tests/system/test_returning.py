"""
Coming back within the presence grace (chat/partings.py) over two real Daphne
instances: a socket that drops and returns on the other instance, and an
instance stopped as a deploy stops it, tell the room neither a leave nor a
join; who does not come back is told as left once the grace ran out. A rolling
restart (chat/draining.py): each instance stopped in turn closes its sockets
with 1012 ("restarting, reconnect"), they come back on the other, and every
message arrives once.
"""

import asyncio

import pytest

from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import session_cookie
from tests.harness.servers import Cluster, static_env

pytestmark = pytest.mark.processes

GRACE_SECONDS = 3
MESSAGES_EACH = 15


@pytest.fixture
def cluster(database, tmp_path, _collected_static):
    env = {**static_env(), "CHAT_PRESENCE_GRACE_SECONDS": GRACE_SECONDS}
    with Cluster(tmp_path, database, env=env) as cluster:
        yield cluster


def connections_of(database, room, nickname):
    rows = database.query(
        "SELECT COUNT(*) FROM chat_connection c "
        "JOIN chat_member m ON m.id = c.member_id "
        "WHERE m.room_id = %s AND m.nickname = %s",
        (room.id, nickname),
    )
    return rows[0][0]


async def until_connections(database, room, nickname, count, timeout):
    # Polled: rows in the database, with no event to wait on.
    async with asyncio.timeout(timeout):
        while connections_of(database, room, nickname) != count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_a_socket_back_on_the_other_instance_is_no_leave_and_no_join(
    cluster, room, database, clients
):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    cookie = await session_cookie(a, room.slug)
    erin = await clients("erin", room.slug, a, cookie=cookie)
    await alice.expect("joined", nickname="erin", participants=2)
    since = alice.mark()

    # A network blip: the socket is cut, and the browser comes back through
    # the balancer to the other instance.
    erin.abort()
    back = await clients("erin", room.slug, b, cookie=cookie)
    assert back.of_type("welcome")[0]["users"] == ["alice", "erin"]
    # The cut socket's grace runs out on instance a: erin is held by b.
    await until_connections(database, room, "erin", 1, GRACE_SECONDS + 10)
    await back.say("still here")
    await alice.expect("message", text="still here", since=since)
    assert [f["type"] for f in alice.frames[since:]] == ["message"]


async def test_a_deploy_tells_the_room_only_of_those_who_did_not_come_back(
    cluster, room, database, clients
):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, b)
    # erin's browser reconnects (to b) when a stops; frank's does not.
    erin = await clients("erin", room.slug, a, servers=[a, b])
    frank = await clients("frank", room.slug, a)
    await alice.expect("joined", nickname="frank", participants=3)
    since = alice.mark()

    a.stop()
    await erin.wait(lambda: erin.server is b and erin.reconnects, "back on b")
    left = await alice.expect("left", since=since, timeout=GRACE_SECONDS + 15)
    assert left == {"type": "left", "nickname": "frank", "participants": 2}
    await erin.say("after the deploy")
    await alice.expect("message", text="after the deploy", since=since)
    assert [f["type"] for f in alice.frames[since:]] == ["left", "message"]
    assert frank.of_type("_closed")


async def chat_through_a_stop(sender, stopping, texts):
    """Send `texts` one after another while `stopping` is stopped."""
    stopped = asyncio.create_task(asyncio.to_thread(stopping.stop))
    for text in texts:
        await sender.say(text)
        await asyncio.sleep(0.02)
    await stopped


async def test_a_rolling_restart_loses_nothing_and_tells_no_one(
    cluster, room, database, clients
):
    a, b = cluster.servers
    ann = await clients("ann", room.slug, a, servers=[a, b])
    ben = await clients("ben", room.slug, b, servers=[a, b])
    await ann.expect("joined", nickname="ben", participants=2)
    since_ann, since_ben = ann.mark(), ben.mark()
    sent = []

    # Instance a goes first: ann is on it.
    texts = [f"ann {n}" for n in range(MESSAGES_EACH)]
    sent += texts
    await chat_through_a_stop(ann, a, texts)
    closed = await ann.expect("_closed", since=since_ann)
    assert closed["code"] == 1012
    await ann.wait(lambda: ann.server is b and ann.reconnects, "ann back on b")
    # What a had not confirmed, ann sent again on b.
    await ann.settle(len(sent))
    a.start()

    # Then b: both are on it now.
    texts = [f"ben {n}" for n in range(MESSAGES_EACH)]
    sent += texts
    await chat_through_a_stop(ben, b, texts)
    for client in (ann, ben):
        await client.wait(lambda c=client: c.server is a, "back on a")
    await ann.say("after both")
    sent.append("after both")

    # Every message saved once: what went unconfirmed was sent again.
    for client in (ann, ben):
        await client.settle(len(sent))
    assert database.count("chat_message", "room_id = %s", (room.id,)) == len(sent)
    for client in (ann, ben):
        # Once each. (Not each sender's order: a message typed while the
        # client reconnects may overtake the ones it sends again.)
        assert sorted(client.texts()) == sorted(sent)
        assert client.repeated_frames == 0
    # Neither was told the other left or came back.
    assert not [f for f in ann.frames[since_ann:] if f["type"] in ("left", "joined")]
    assert not [f for f in ben.frames[since_ben:] if f["type"] in ("left", "joined")]
    assert not cluster.tracebacks()
