"""
The chat under both servers it supports, Daphne and uvicorn (the faster
option), side by side on one Redis: what users on one see of users on the
other, and what they see when an instance is stopped (SIGTERM, as a deployment
or a scale-in does).
"""

import asyncio
import signal
import time

import pytest

from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.servers import Cluster, Daphne, Uvicorn, static_env

pytestmark = pytest.mark.processes

# Far longer than the tests below wait for a `left`: the other instances'
# sweep of a dead instance cannot be what they see.
INSTANCE_TIMEOUT_SECONDS = 60
# A stopping instance's users leave everyone's presence within this. Daphne and
# uvicorn stop in about a second; the rest is slack for a loaded machine.
LEFT_WITHIN_SECONDS = 15


@pytest.fixture
def make_cluster(database, tmp_path, _collected_static):
    """A private Redis and one instance of each of `kinds`, in that order."""
    clusters = []

    def make(*kinds, **env):
        workdir = tmp_path / f"c{len(clusters)}"
        workdir.mkdir()
        cluster = Cluster(workdir, database, instances=0, env={**static_env(), **env})
        clusters.append(cluster)
        cluster.__enter__()
        for kind in kinds:
            cluster.add_server(kind)
        return cluster

    yield make
    for cluster in clusters:
        cluster.close()


async def test_daphne_and_uvicorn_users_chat_both_ways(
    make_cluster, room, database, clients
):
    cluster = make_cluster(Daphne, Uvicorn)
    daphne, uvicorn = cluster.servers
    alice = await clients("alice", room.slug, daphne)
    bob = await clients("bob", room.slug, uvicorn)
    assert bob.of_type("welcome")[0]["users"] == ["alice", "bob"]
    # Arrivals cross both ways.
    assert await alice.expect("joined", nickname="bob") == {
        "type": "joined",
        "nickname": "bob",
        "participants": 2,
    }
    erin = await clients("erin", room.slug, daphne)
    await bob.expect("joined", nickname="erin", participants=3)

    # So does typing; the typist is not told of their own.
    await alice.send({"type": "typing"})
    assert await bob.expect("typing") == {"type": "typing", "nickname": "alice"}
    await bob.send({"type": "typing"})
    await alice.expect("typing", nickname="bob")
    await bob.send({"type": "stop_typing"})
    await alice.expect("stop_typing", nickname="bob")
    await alice.send({"type": "stop_typing"})
    await bob.expect("stop_typing", nickname="alice")

    # Both talk at once, each through their own server (within the rate
    # limit's burst).
    async def talk(client, count=8):
        texts = [f"{client.nickname} {index}" for index in range(count)]
        for text in texts:
            await client.say(text)
        return texts

    said = dict(
        zip(("alice", "bob"), await asyncio.gather(talk(alice), talk(bob)), strict=True)
    )
    total = sum(len(texts) for texts in said.values())
    for client in (alice, bob, erin):
        await client.expect_messages(total)
    stored = [
        text
        for (text,) in database.query(
            "SELECT text FROM chat_message WHERE room_id = %s ORDER BY seq",
            (room.id,),
        )
    ]
    assert sorted(stored) == sorted(said["alice"] + said["bob"])
    for client in (alice, bob, erin):
        live = client.of_type("message")
        # Every message once, live, on every socket...
        assert sorted(f["seq"] for f in live) == list(range(1, total + 1))
        assert client.repeated_frames == 0
        assert not client.pending
        # ...each sender's in the order sent and saved, and shown in seq
        # order: the order everyone sees.
        for nickname, texts in said.items():
            own = [f for f in live if f["nickname"] == nickname]
            assert [f["text"] for f in own] == texts
            assert [f["seq"] for f in own] == sorted(f["seq"] for f in own)
        assert client.texts() == stored

    # Departures cross both ways.
    await erin.close()
    await bob.expect("left", nickname="erin", participants=2)
    await bob.close()
    assert await alice.expect("left", nickname="bob") == {
        "type": "left",
        "nickname": "bob",
        "participants": 1,
    }
    assert alice.users == {"alice"}
    assert not cluster.tracebacks()


@pytest.mark.parametrize(
    ("stopping_kind", "staying_kind"),
    [(Daphne, Uvicorn), (Uvicorn, Daphne)],
    ids=["daphne", "uvicorn"],
)
async def test_stopped_instance_users_leave_at_once(
    make_cluster, room, database, clients, stopping_kind, staying_kind
):
    cluster = make_cluster(
        stopping_kind,
        staying_kind,
        CHAT_INSTANCE_TIMEOUT_SECONDS=INSTANCE_TIMEOUT_SECONDS,
    )
    stopping, staying = cluster.servers
    alice = await clients("alice", room.slug, stopping)
    carol = await clients("carol", room.slug, stopping)
    bob = await clients("bob", room.slug, staying)
    await alice.expect("joined", nickname="bob", participants=3)
    await alice.say("before the stop")
    await bob.expect("message", text="before the stop")

    # SIGTERM, then waiting for the process, in a thread: the clients read on.
    started = time.monotonic()
    stopped = asyncio.create_task(asyncio.to_thread(stopping.stop))
    for nickname in ("alice", "carol"):
        await bob.expect("left", nickname=nickname, timeout=LEFT_WITHIN_SECONDS)
    left_after = time.monotonic() - started
    await stopped
    # It exited on its own: Process.stop kills only what still runs 10 seconds
    # after SIGTERM (uvicorn ends by raising the signal again, hence -15).
    assert stopping.proc.returncode in (0, -signal.SIGTERM), stopping.log()[-3000:]
    assert bob.participants == 1
    assert bob.users == {"bob"}
    codes = [int((await c.expect("_closed"))["code"]) for c in (alice, carol)]
    # Both say "service restart" to each socket as they stop: uvicorn by
    # itself, Daphne through chat/draining.py.
    assert codes == [1012, 1012]

    # None of its sockets is left in the database, and a newcomer on the other
    # instance is told only of who is really there.
    assert database.count("chat_connection", "instance_id = %s", (stopping.name,)) == 0
    if stopping_kind is Daphne:
        # Its exit hook took its sockets out, and its own row. (uvicorn ends by
        # raising SIGTERM again, which runs no exit hook: its consumers left
        # one by one, and its empty row waits for the other instances' sweep.)
        assert database.count("chat_instance", "name = %s", (stopping.name,)) == 0
    dave = await clients("dave", room.slug, staying)
    assert dave.of_type("welcome")[0]["users"] == ["bob", "dave"]
    assert not cluster.tracebacks()
    print(
        f"\nSIGTERM of {stopping_kind.__name__}: its users left the other "
        f"instance's view after {left_after:.2f}s "
        f"(instance timeout {INSTANCE_TIMEOUT_SECONDS}s); "
        f"their sockets closed with {codes}"
    )
