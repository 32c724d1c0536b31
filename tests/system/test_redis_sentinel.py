"""
Redis Sentinel, for a self-hosted Redis with a replica: two instances find the
primary through the sentinel (REDIS_SENTINELS). The primary stops mid-chat, the
sentinel promotes the replica, and the instances go on through it by
themselves: live delivery comes back, and every message arrives once.
"""

import pytest

from tests.harness.delivery import everyone_has_everything, live_again
from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.redis import RedisSentinel
from tests.harness.servers import Cluster, static_env
from tests.harness.waiting import wait_until_async

pytestmark = pytest.mark.processes

FAST_SENDERS = {"CHAT_RATE_BURST": 1000, "CHAT_RATE_PER_SECOND": 1000}


@pytest.fixture
def cluster(database, tmp_path, _collected_static):
    sentinel = RedisSentinel(tmp_path)
    env = {**static_env(), **FAST_SENDERS, **sentinel.env}
    with Cluster(tmp_path, database, redis=sentinel, env=env) as cluster:
        yield cluster, sentinel


async def test_a_failover_mid_chat_loses_nothing(cluster, room, database, clients):
    cluster, sentinel = cluster
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    bob = await clients("bob", room.slug, b)
    await alice.expect("joined", nickname="bob", participants=2)
    sent = []
    for index in range(3):
        sent.append(f"before {index}")
        await alice.say(sent[-1])
    await bob.expect_messages(3)

    first = sentinel.primary.port
    sentinel.primary.stop()
    # Messages sent while there is no primary are saved and echoed back.
    for index in range(3):
        sent.append(f"during {index}")
        await bob.say(sent[-1])
    await wait_until_async(
        lambda: sentinel.primary_port() != first, 30, "the sentinel's failover"
    )
    assert sentinel.primary_port() == sentinel.replica.port

    await live_again(alice, bob, sent)
    await live_again(bob, alice, sent)
    for index in range(3):
        sent.append(f"after {index}")
        await alice.say(sent[-1])
    await everyone_has_everything(database, room.id, [alice, bob], sent)
    assert not cluster.tracebacks()
