"""Process-wide counters (chat/counters.py)."""

import threading

import pytest

from chat import counters


@pytest.fixture(autouse=True)
def _fresh_counts():
    counters.reset()


def test_counters_add_up_by_name_and_start_at_zero():
    assert counters.get("hub_overloaded.message") == 0
    assert counters.add("hub_overloaded.message") == 1
    assert counters.add("hub_overloaded.message", 4) == 5
    counters.add("layer_send_failed.typing", 2)
    assert counters.get("hub_overloaded.message") == 5
    assert counters.snapshot() == {
        "hub_overloaded.message": 5,
        "layer_send_failed.typing": 2,
    }


def test_a_snapshot_is_a_copy():
    counters.add("a")
    seen = counters.snapshot()
    seen["a"] = 100
    counters.add("a")
    assert counters.snapshot() == {"a": 2}
    assert seen == {"a": 100}


def test_counts_from_several_threads_are_not_lost():
    def count():
        for _ in range(10_000):
            counters.add("threads")

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counters.get("threads") == 40_000


def test_reset_forgets_every_count():
    counters.add("a", 3)
    counters.reset()
    assert counters.snapshot() == {}
