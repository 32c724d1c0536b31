"""
The doorbell (chat/events.py) over a real redis-server: channels-redis's silent
drop at a full channel is counted and logged as a drop.
"""

import pytest
from channels.layers import channel_layers, get_channel_layer
from channels_redis.core import RedisChannelLayer

from chat import counters, events
from tests.harness.redis import RedisServer

pytestmark = [pytest.mark.processes, pytest.mark.usefixtures("fresh_drop_counts")]


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_a_full_channel_in_redis_is_counted_as_a_drop(
    redis_server, settings, drop_lines
):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_server.url], "capacity": 2},
        }
    }
    channel_layers.backends.clear()
    layer = get_channel_layer()
    # Another process's layer: its hub's channel is a queue of its own (one
    # process's channels share one in channels-redis).
    other = RedisChannelLayer(hosts=[redis_server.url], capacity=2)
    try:
        for each in (layer, other):
            hub = await each.new_channel(prefix="hub")
            await each.group_add(events.group_name(9), hub)
        for seq in (1, 2):  # both channels hold these
            await events.room_send(9, {"type": "message", "seq": seq})
        assert counters.snapshot() == {}
        # Now both are full: the layer takes the send and drops it, twice.
        sent = await events.room_send(
            9, {"type": "message", "seq": 3}, {"type": "message", "seq": 4}
        )
        assert sent
        assert counters.snapshot() == {"layer_channel_full.message": 4}
        assert drop_lines[0].startswith("layer_channel_full type=message dropped=4 ")
        assert "room=9" in drop_lines[0]
        # A group_send made elsewhere is counted by the channels it missed.
        await layer.group_send(events.group_name(9), {"type": "x"})
        assert counters.get("layer_channel_full.event") == 2
    finally:
        await layer.flush()
        await layer.close_pools()
        await other.close_pools()
