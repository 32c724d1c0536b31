"""
A Redis Cluster, as Azure Managed Redis is with its default (OSS) clustering
policy: three private nodes on loopback, over plain TCP and over TLS.

The pub/sub layer chats through it, each instance naming a different node, and
the shared rate limits are counted on the cluster. The core layer cannot run on
one: a server given both refuses to start and says what to set.
"""

import subprocess

import pytest

from tests.harness.certificates import make_certificates
from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.process import START_TIMEOUT
from tests.harness.redis import RedisCluster, require_redis_server
from tests.harness.servers import Cluster, Daphne, static_env

pytestmark = pytest.mark.processes


@pytest.fixture(scope="module", params=["plain", "tls"])
def redis_cluster(request, tmp_path_factory):
    require_redis_server()
    workdir = tmp_path_factory.mktemp(f"redis-cluster-{request.param}")
    tls = make_certificates(workdir) if request.param == "tls" else None
    nodes = RedisCluster(workdir, tls=tls)
    # Cluster (below) starts and stops it with the instances.
    return nodes


@pytest.fixture(scope="module")
def cluster(redis_cluster, database, tmp_path_factory, _collected_static):
    env = {**static_env(), "CHAT_CHANNEL_LAYER": "pubsub"}
    if redis_cluster.tls:
        env["REDIS_SSL_CA_CERTS"] = redis_cluster.tls["ca"]
    workdir = tmp_path_factory.mktemp("instances")
    with Cluster(
        workdir, database, instances=1, redis=redis_cluster, env=env
    ) as cluster:
        # The second instance names another node of the same cluster.
        other = redis_cluster.url.replace(
            str(redis_cluster.nodes[0].port), str(redis_cluster.nodes[1].port)
        )
        cluster.add_server(REDIS_URL=other)
        yield cluster


async def test_two_instances_chat_through_a_cluster_once_each(
    cluster, redis_cluster, room, database, clients
):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    bob = await clients("bob", room.slug, b)
    await alice.expect("joined", nickname="bob", participants=2)

    for index in range(6):
        sender = (alice, bob)[index % 2]
        await sender.say(f"through the cluster {index}")
    for client in (alice, bob):
        await client.expect_messages(6)
        assert sorted(f["seq"] for f in client.of_type("message")) == list(range(1, 7))
    await bob.send({"type": "typing"})
    await alice.expect("typing", nickname="bob")
    assert database.count("chat_message", "room_id = %s", (room.id,)) == 6

    # The rate limits were counted on the cluster, not each instance alone.
    assert redis_cluster.keys("chat:limits:*")
    for server in cluster.servers:
        assert "limits_shared_failed" not in server.log()
        assert "layer_" not in server.log()
    assert not cluster.tracebacks()


def test_the_core_layer_on_a_cluster_is_refused_at_start(cluster, tmp_path):
    env = {**cluster.env(), "CHAT_CHANNEL_LAYER": "core"}
    server = Daphne("core-on-cluster", tmp_path, env)
    server.spawn(server.command(), env=server.env)
    try:
        assert server.proc is not None
        code = server.proc.wait(START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a core layer on a cluster started:\n{server.log()[-2000:]}")
    finally:
        server.stop()
    log = server.log()
    assert code != 0
    assert "REDIS_URL reaches a Redis Cluster" in log
    assert "Set CHAT_CHANNEL_LAYER=pubsub" in log
    assert "Traceback" not in log
