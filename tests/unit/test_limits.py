"""
chat/limits.py: moving windows per visitor and address (shared over Redis in
tests/system/test_limits.py).
"""

from chat import limits


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


def test_the_windows_of_visitors_long_gone_are_forgotten(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    local = limits.LocalWindows()
    joins, messages = limits.Window("join", 5, 60), limits.Window("message", 5, 5)
    for i in range(50):
        local.hit(joins, f"gone-{i}")
        local.hit(messages, f"gone-{i}")
    # Past both windows: each new visitor's hits forget the old ones.
    now[0] += 61
    for i in range(50):
        local.hit(joins, f"new-{i}")
    assert set(local.hits) == {f"join/new-{i}" for i in range(50)}
    # A visitor still in its window keeps its count.
    local.hit(messages, "new-0")
    now[0] += 2
    for i in range(50, 60):
        local.hit(joins, f"new-{i}")
    assert local.count(messages, "new-0") == 1


def test_a_sockets_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = limits.TokenBucket(burst=2, rate=4, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.25  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
