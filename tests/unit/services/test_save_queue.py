"""chat/services/save_queue.py: messages posted meanwhile are saved and announced
together, and a slow layer does not hold up the next save."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat import events
from chat.models import Room
from chat.services import messages
from tests.unit.factories import instance


@pytest.mark.django_db(transaction=True)
async def test_messages_posted_together_are_saved_and_announced_together():
    def setup():
        instance("here")
        return Room.objects.create(name="Test", slug="test")

    room = await database_sync_to_async(setup)()
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(events.group_name(room.pk), listener)

    texts = [f"m{n}" for n in range(6)]
    answers = await asyncio.gather(
        *(
            messages.amessage_post(room=room, nickname="al", visitor=f"v{n}", text=text,
                          client_id=f"c{n}")
            for n, text in enumerate(texts)
        )
    )  # fmt: skip
    # Each sender gets its own message back, told to the room.
    assert [(frame["text"], delivered) for frame, delivered in answers] == [
        (text, True) for text in texts
    ]
    relayed = []
    while sum(map(len, relayed)) < len(texts):
        event = await asyncio.wait_for(layer.receive(listener), 5)
        relayed.append([frame["seq"] for frame in event["frames"]])
    # One lot: one statement, one event, in the order they were posted.
    assert relayed == [[1, 2, 3, 4, 5, 6]]


@pytest.mark.django_db(transaction=True)
async def test_a_slow_layer_does_not_hold_up_the_next_save(monkeypatch):
    def setup():
        instance("here")
        return Room.objects.create(name="Test", slug="test")

    room = await database_sync_to_async(setup)()
    layer_free = asyncio.Event()
    announced = []

    async def slow_send(room_id, *frames, **kwargs):
        if not announced:
            await layer_free.wait()  # Redis not answering, for now
        announced.append([frame["seq"] for frame in frames])
        return True

    monkeypatch.setattr(events, "room_send", slow_send)
    save = messages.messages_save
    lots = []
    two_lots_saved = threading.Event()

    def counted_save(**kwargs):
        results = save(**kwargs)
        lots.append(results)
        if len(lots) == 2:
            two_lots_saved.set()
        return results

    monkeypatch.setattr(messages, "messages_save", counted_save)

    def post(n):
        return asyncio.create_task(
            messages.amessage_post(room=room, nickname="al", visitor="v", text=f"m{n}",
                          client_id=f"c{n}")
        )  # fmt: skip

    first = post(1)
    await asyncio.sleep(0)  # the first lot is under way
    second = post(2)

    assert await asyncio.to_thread(two_lots_saved.wait, 5)
    assert not first.done() and not second.done()
    layer_free.set()
    assert [(await task)[0]["seq"] for task in (first, second)] == [1, 2]
    # Announced in the order saved.
    assert announced == [[1], [2]]
