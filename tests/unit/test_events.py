"""
The doorbell (chat/events.py): what the layer did not take is counted and
logged as a drop (tests/system/test_events.py: channels-redis's silent drop at
a full channel).
"""

import asyncio

import pytest
from channels.layers import channel_layers, get_channel_layer

from chat import counters, events

pytestmark = pytest.mark.usefixtures("fresh_drop_counts")


def typing(nickname):
    return {"type": "typing", "nickname": nickname}


async def test_a_send_the_layer_refuses_is_counted_per_frame(monkeypatch, drop_lines):
    async def refuse(room_id, event):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1.")

    monkeypatch.setattr(events, "_group_send", refuse)
    assert not await events.room_send(3, typing("a"), typing("b"))
    assert not await events.room_send(3, {"type": "message", "seq": 1})
    assert counters.snapshot() == {
        "layer_send_failed.typing": 2,
        "layer_send_failed.message": 1,
    }
    assert drop_lines[0].startswith("layer_send_failed type=typing dropped=2 total=2 ")
    assert "room=3 cause=ConnectionError('Error 111 connecting" in drop_lines[0]


async def test_a_send_past_its_timeout_is_counted(monkeypatch):
    async def hang(room_id, event):
        await asyncio.sleep(10)

    monkeypatch.setattr(events, "_group_send", hang)
    monkeypatch.setattr(events, "SEND_TIMEOUT_SECONDS", 0.05)
    assert not await events.room_send(3, {"type": "left", "nickname": "a"})
    assert counters.get("layer_send_failed.left") == 1


async def test_per_frame_excludes_travel_with_the_event(settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }
    channel_layers.backends.clear()
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(events.group_name(5), channel)
    await events.room_send(5, typing("a"), typing("b"), excludes=["c-a", "c-b"])
    await events.room_send(5, typing("c"), exclude="c-c")
    first, second = await layer.receive(channel), await layer.receive(channel)
    assert (first["frames"], first["excludes"]) == (
        [typing("a"), typing("b")],
        ["c-a", "c-b"],
    )
    assert first["exclude"] is None
    # Without excludes the event is what older instances sent.
    assert "excludes" not in second
    assert second["exclude"] == "c-c"
