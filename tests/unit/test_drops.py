"""Drops on the delivery path (chat/drops.py): counted, and logged rate-limited."""

import asyncio
import time

import pytest

from chat import counters, drops

pytestmark = pytest.mark.usefixtures("fresh_drop_counts")


def test_the_first_drop_is_logged_at_once_with_its_fields(drop_lines):
    drops.dropped("layer_send_failed", "message", 3, room=7, cause="Timeout()")
    assert drop_lines == [
        "layer_send_failed type=message dropped=3 total=3 room=7 cause=Timeout()"
    ]
    assert counters.get("layer_send_failed.message") == 3


async def test_later_drops_are_counted_at_once_and_logged_together(
    drop_lines, monkeypatch
):
    monkeypatch.setattr(drops, "LOG_INTERVAL_SECONDS", 0.1)
    for _ in range(50):
        drops.dropped("hub_overloaded", "typing", 2, room=1)
    assert counters.get("hub_overloaded.typing") == 100
    assert len(drop_lines) == 1
    # What came after the first line is logged when the interval ends, with
    # the latest drop's fields.
    await asyncio.sleep(0.2)
    assert drop_lines[1:] == ["hub_overloaded type=typing dropped=98 total=100 room=1"]
    await asyncio.sleep(0.2)
    assert len(drop_lines) == 2


def test_each_kind_has_a_line_of_its_own(drop_lines):
    drops.dropped("hub_overloaded", "typing")
    drops.dropped("hub_overloaded", "message")
    drops.dropped("layer_send_failed", "message")
    drops.dropped("hub_overloaded", "typing")
    assert [line.split()[:2] for line in drop_lines] == [
        ["hub_overloaded", "type=typing"],
        ["hub_overloaded", "type=message"],
        ["layer_send_failed", "type=message"],
    ]
    assert counters.get("hub_overloaded.typing") == 2


def test_outside_an_event_loop_the_next_drop_after_the_interval_logs(
    drop_lines, monkeypatch
):
    monkeypatch.setattr(drops, "LOG_INTERVAL_SECONDS", 0.05)
    drops.dropped("layer_send_failed", "deleted")
    drops.dropped("layer_send_failed", "deleted")
    assert len(drop_lines) == 1
    time.sleep(0.06)
    drops.dropped("layer_send_failed", "deleted")
    assert drop_lines[1].startswith("layer_send_failed type=deleted dropped=2 total=3")


def test_nothing_dropped_is_nothing_logged(drop_lines):
    drops.dropped("hub_overloaded", "typing", 0)
    assert drop_lines == []
    assert counters.snapshot() == {}


@pytest.mark.parametrize(
    ("frames", "kind"),
    [
        ([{"type": "typing"}, {"type": "message"}], "typing"),
        ([{"type": "stop_typing"}], "typing"),
        ([{"type": "message"}], "message"),
        ([{"type": "left"}], "left"),
        ([], "event"),
        (["not a frame"], "event"),
    ],
)
def test_a_lot_is_counted_as_its_first_frame_s_type(frames, kind):
    assert drops.kind_of(frames) == kind


async def test_a_line_logged_by_a_drop_holds_off_the_pending_one(
    drop_lines, monkeypatch
):
    monkeypatch.setattr(drops, "LOG_INTERVAL_SECONDS", 0.1)
    drops.dropped("hub_overloaded", "message")
    drops.dropped("hub_overloaded", "message")  # waits for the interval's end
    # A drop just past the interval logs before the waiting line's timer runs:
    # the loop is held meanwhile.
    time.sleep(0.11)  # noqa: ASYNC251
    drops.dropped("hub_overloaded", "message")
    drops.dropped("hub_overloaded", "message")
    await asyncio.sleep(0.05)
    assert [line.split()[2] for line in drop_lines] == ["dropped=1", "dropped=2"]
    await asyncio.sleep(0.1)
    assert [line.split()[2] for line in drop_lines] == [
        "dropped=1",
        "dropped=2",
        "dropped=1",
    ]
