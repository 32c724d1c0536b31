"""
chat/limits.py over real redis-servers: two processes share their windows on
one server, on a Redis Cluster, and on the primary a sentinel names.
"""

import pytest

from chat import limits, redis_topology
from tests.harness.redis import RedisCluster, RedisSentinel, RedisServer


@pytest.fixture(params=["server", "cluster", "sentinel"])
def shared_redis(request, tmp_path, settings, monkeypatch):
    """A started Redis of each kind, and the settings that point at it."""
    kinds = {"server": RedisServer, "cluster": RedisCluster, "sentinel": RedisSentinel}
    redis = kinds[request.param](tmp_path)
    redis.start()
    settings.CHAT_LAYER_PREFIX = "limits-test"
    if request.param == "sentinel":
        settings.REDIS_URLS = []
        settings.REDIS_SENTINELS = [("127.0.0.1", redis.port)]
        settings.REDIS_SENTINEL_MASTER = redis.MASTER
    else:
        settings.REDIS_URLS = [redis.url]
        settings.REDIS_SENTINELS = []
    settings.REDIS_LAYER_HOSTS = [{"what": "only that there is one"}]
    monkeypatch.setattr(redis_topology, "clustered", request.param == "cluster")
    yield redis
    redis.stop()


@pytest.mark.processes
async def test_two_instances_share_their_windows_over_redis(shared_redis):
    # Two processes' limiters, as two Daphne instances have.
    first, second = limits.Limiter(), limits.Limiter()
    window = limits.Window("message", 4, 60)
    results = [await (first, second)[i % 2].hit(window, "v") for i in range(5)]
    assert results == [True, True, True, True, False]
    # A process asks Redis only from a quarter of the window on, and then
    # tells it of every hit it counted: together they still stop at 8.
    window = limits.Window("message", 8, 60)
    first_hits = [await first.hit(window, "w") for _ in range(3)]
    second_hits = [await second.hit(window, "w") for _ in range(6)]
    assert first_hits == [True] * 3
    assert second_hits == [True] * 5 + [False]
    # Refused by Redis, refused here again at once.
    assert not await second.hit(window, "w")
    # Redis gone: each process counts on its own, and nothing fails.
    shared_redis.stop()
    assert await first.hit(window, "other")
