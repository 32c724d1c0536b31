"""
A rolling deploy over two real Daphne instances (chat/draining.py): each is
stopped with SIGTERM in turn while people chat. Its sockets are closed with
1012 ("restarting, reconnect"), they come back on the other instance within
the presence grace, and every message arrives once; the room hears no one
leave or join.
"""

import asyncio

import pytest

from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.servers import Cluster, static_env

pytestmark = pytest.mark.processes

MESSAGES_EACH = 15


@pytest.fixture
def cluster(database, tmp_path, _collected_static):
    env = {**static_env(), "CHAT_PRESENCE_GRACE_SECONDS": 3}
    with Cluster(tmp_path, database, env=env) as cluster:
        yield cluster


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
