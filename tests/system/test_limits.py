"""chat/limits.py over a real redis-server: two processes share their windows."""

import pytest

from chat import limits
from tests.harness.redis import RedisServer


@pytest.mark.processes
async def test_two_instances_share_their_windows_over_redis(tmp_path, settings):
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        settings.REDIS_URL = redis.url
        settings.CHAT_LAYER_PREFIX = "limits-test"
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
        redis.stop()
        assert await first.hit(window, "other")
    finally:
        redis.stop()
