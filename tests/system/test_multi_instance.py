"""
Several real Daphne processes chatting through one Redis: what a user on one
instance sees of a user on another.
"""

import uuid

import pytest

from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import session_cookie
from tests.harness.servers import Cluster, static_env

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module")
def cluster(database, tmp_path_factory, _collected_static):
    workdir = tmp_path_factory.mktemp("cluster")
    with Cluster(workdir, database, env=static_env()) as cluster:
        yield cluster


async def test_messages_reach_both_instances_once_in_seq_order(
    cluster, room, database, clients
):
    a, b = cluster.servers
    slug = room.slug
    alice = await clients("alice", slug, a, cookie=await session_cookie(a, slug))
    bob = await clients("bob", slug, b, cookie=await session_cookie(b, slug))
    await alice.expect("joined", nickname="bob", participants=2)

    texts = []
    for index in range(10):
        sender = alice if index % 2 == 0 else bob
        texts.append(f"message {index} from {sender.nickname}")
        await sender.say(texts[-1])
    for client in (alice, bob):
        await client.expect_messages(10)
        # Each socket got every message once, live. Two instances ring the
        # doorbell independently, so frames may cross on the way (seq 6 before
        # 5); the client shows them by seq, as the room page does.
        live = [f["seq"] for f in client.of_type("message")]
        assert sorted(live) == list(range(1, 11))
        assert client.cursor == 10
        # Two senders at once: their messages interleave, each one's in order.
        shown = client.texts()
        assert sorted(shown) == sorted(texts)
        for nickname in ("alice", "bob"):
            own = [t for t in texts if t.endswith(nickname)]
            assert [t for t in shown if t.endswith(nickname)] == own
        assert not client.pending
    await alice.say("last")
    for client in (alice, bob):
        await client.expect("message", text="last", seq=11)
        assert len(client.of_type("message")) == 11
    assert database.count("chat_message", "room_id = %s", (room.id,)) == 11


async def test_typing_joined_and_left_cross_instances(cluster, room, clients):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    bob = await clients("bob", room.slug, b)
    assert await alice.expect("joined", nickname="bob") == {
        "type": "joined",
        "nickname": "bob",
        "participants": 2,
    }
    await alice.send({"type": "typing"})
    assert await bob.expect("typing") == {"type": "typing", "nickname": "alice"}
    await alice.send({"type": "stop_typing"})
    await bob.expect("stop_typing", nickname="alice")
    await bob.send({"type": "typing"})
    await alice.expect("typing", nickname="bob")
    # The typist is not told of their own typing.
    await bob.say("after typing")
    await bob.expect("message", text="after typing")
    assert [f["nickname"] for f in bob.of_type("typing")] == ["alice"]

    await bob.close()
    assert await alice.expect("left") == {
        "type": "left",
        "nickname": "bob",
        "participants": 1,
    }


async def test_nothing_leaks_into_another_room(cluster, room, database, clients):
    a, b = cluster.servers
    other = f"o-{uuid.uuid4().hex[:8]}"
    database.create_room(other)
    alice = await clients("alice", room.slug, a)
    bob = await clients("bob", room.slug, b)
    # Bystanders in the other room, one on each instance.
    carol = await clients("carol", other, a)
    dave = await clients("dave", other, b)
    await carol.expect("joined", nickname="dave")
    mark = {c: c.mark() for c in (carol, dave)}

    await alice.send({"type": "typing"})
    await alice.say("only for this room")
    await bob.say("me too")
    await bob.expect("message", text="only for this room")
    await alice.expect("message", text="me too")
    await bob.close()
    await alice.expect("left", nickname="bob")

    # A message in the other room sent after all that is seen by both
    # bystanders; everything before it would have been delivered first.
    await carol.say("other room")
    for client in (carol, dave):
        await client.expect("message", text="other room")
        frames = client.frames[mark[client] :]
        assert [f["type"] for f in frames] == ["message"]
        assert frames[0]["seq"] == 1
        assert frames[0]["room"] == other


async def test_counts_and_users_across_instances(cluster, room, clients):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    bob_welcome_from = await clients("bob", room.slug, b)
    welcome = bob_welcome_from.of_type("welcome")[0]
    assert welcome["participants"] == 2
    assert welcome["users"] == ["alice", "bob"]
    await alice.expect("joined", nickname="bob", participants=2)
    assert alice.participants == bob_welcome_from.participants == 2
    assert alice.users == bob_welcome_from.users == {"alice", "bob"}


async def test_two_tabs_on_two_instances_count_once(cluster, room, clients):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    cookie = await session_cookie(a, room.slug)
    tab_a = await clients("erin", room.slug, a, cookie=cookie)
    await alice.expect("joined", nickname="erin", participants=2)
    tab_b = await clients("erin", room.slug, b, cookie=cookie)
    welcome = tab_b.of_type("welcome")[0]
    assert welcome["participants"] == 2
    assert welcome["users"] == ["alice", "erin"]

    # A message after the second tab joined: once alice has it, a second
    # "joined" would have come before it.
    await alice.say("hello erin")
    for client in (alice, tab_a, tab_b):
        await client.expect("message", text="hello erin")
    assert len(alice.of_type("joined")) == 1

    # Closing one tab keeps erin in the room; closing the other does not.
    await tab_a.close()
    await alice.say("still here?")
    await tab_b.expect("message", text="still here?")
    await alice.expect("message", text="still here?")
    assert not alice.of_type("left")
    await tab_b.close()
    assert await alice.expect("left") == {
        "type": "left",
        "nickname": "erin",
        "participants": 1,
    }
