"""
Several Redis servers as shards of the channel layer (REDIS_URL lists them,
separated by commas): rooms spread over both, and every message still arrives
once on both instances, with either layer.
"""

import json
import uuid

import pytest

from chat import health
from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import http_get_sync
from tests.harness.redis import RedisServer
from tests.harness.servers import Cluster, static_env
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.processes

# channels-redis picks a shard by a CRC of the room's group name: any twelve rooms
# with consecutive ids fall on both of two shards (fewer may all fall on one).
ROOMS = 12


@pytest.fixture(scope="module", params=["core", "pubsub"])
def shards(request, database, tmp_path_factory, _collected_static):
    workdir = tmp_path_factory.mktemp(f"shards-{request.param}")
    (workdir / "second").mkdir()
    second = RedisServer(workdir / "second")
    second.start()
    first = RedisServer(workdir)
    env = {**static_env(), "CHAT_CHANNEL_LAYER": request.param}
    try:
        with Cluster(
            workdir,
            database,
            redis=first,
            redis_url=f"{first.url},{second.url}",
            env=env,
        ) as cluster:
            yield cluster, (first, second), request.param
    finally:
        second.stop()


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    servers = [RedisServer(tmp_path_factory.mktemp(f"shard-{i}")) for i in range(2)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    "backend",
    [
        "channels_redis.core.RedisChannelLayer",
        "channels_redis.pubsub.RedisPubSubChannelLayer",
    ],
)
def test_the_readiness_round_trip_over_two_shards_always_comes_back(
    two_servers, settings, backend
):
    hosts = [{"address": server.url} for server in two_servers]
    settings.REDIS_LAYER_HOSTS = hosts
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": backend, "CONFIG": {"hosts": hosts}}
    }
    # A channel's own messages are sent to the shard of its whole name and read
    # from the shard of its name's first part (channels-redis 4.3, core layer):
    # a check sending to its own channel failed on about half the probes.
    for _ in range(20):
        health.CHECKS["channel_layer"]()


def rooms_held(server, layer):
    """The room groups one Redis holds: keys on the core layer, subscribed
    channels on the pub/sub layer."""
    client = server.client()
    if layer == "core":
        return client.keys("chat:group:room-*")
    return client.pubsub_channels("chat__group__room-*")


async def test_rooms_spread_over_the_shards_and_each_message_arrives_once(
    shards, database, clients
):
    cluster, servers, layer = shards
    a, b = cluster.servers
    rooms = [f"s-{uuid.uuid4().hex[:8]}" for _ in range(ROOMS)]
    pairs = []
    for slug in rooms:
        database.create_room(slug)
        alice = await clients("alice", slug, a)
        bob = await clients("bob", slug, b)
        await alice.expect("joined", nickname="bob", participants=2)
        pairs.append((alice, bob))

    for slug, (alice, bob) in zip(rooms, pairs, strict=True):
        await alice.say(f"in {slug} from a")
        await bob.say(f"in {slug} from b")
    for slug, (alice, bob) in zip(rooms, pairs, strict=True):
        for client in (alice, bob):
            await client.expect_messages(2)
            assert sorted(client.texts()) == [f"in {slug} from a", f"in {slug} from b"]
            assert sorted(f["seq"] for f in client.of_type("message")) == [1, 2]

    held = [len(rooms_held(server, layer)) for server in servers]
    assert all(held), f"rooms per shard: {held}"
    assert not cluster.tracebacks()


def test_a_shard_that_stops_makes_every_instance_unready(shards):
    cluster, (_first, second), _layer = shards
    second.stop()
    try:
        for server in cluster.servers:
            status, _headers, body = http_get_sync(f"{server.http}/readyz")
            assert status == 503
            assert json.loads(body)["failing"] == ["channel_layer"]
    finally:
        second.start()
    # Ready again once it is back.
    for server in cluster.servers:
        wait_until(
            lambda s=server: http_get_sync(f"{s.http}/readyz")[0] == 200,
            10,
            f"{server.name} ready again",
        )
