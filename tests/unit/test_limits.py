"""chat/limits.py: moving windows per visitor and address, shared over Redis."""

import pytest

from chat import limits
from tests.harness.redis import RedisServer


def test_a_window_allows_its_amount_then_refuses(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    local = limits.LocalWindows()
    window = limits.Window("message", 3, 5)
    assert [local.hit(window, "v") for _ in range(4)] == [True, True, True, False]
    # Another key has a window of its own.
    assert local.hit(window, "w")
    now[0] += 5.01
    assert local.hit(window, "v")


def test_the_window_of_a_burst_and_a_rate():
    assert limits.Window.of("m", 10, 2.0) == limits.Window("m", 10, 5)
    assert limits.Window.of("m", 1, 50.0).seconds == 1


def test_local_keys_are_bounded(monkeypatch):
    monkeypatch.setattr(limits, "MAX_LOCAL_KEYS", 10)
    local = limits.LocalWindows()
    window = limits.Window("join", 1, 60)
    for i in range(100):
        local.hit(window, f"address-{i}")
    assert len(local.hits) == 10


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


def test_a_sockets_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = limits.TokenBucket(burst=2, rate=4, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.25  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
