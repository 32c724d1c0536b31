"""chat/services/save_queue.py: messages posted meanwhile are saved and announced
together, and a slow layer does not hold up the next save."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from chat import events
from chat.models import Message, Room
from chat.services import messages, sanctions, save_queue
from tests.conftest import saves_held
from tests.harness.waiting import wait_until_async
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


@pytest.mark.django_db(transaction=True)
async def test_rooms_waiting_at_once_are_saved_in_one_trip_and_one_failing_alone(
    monkeypatch,
):
    def setup():
        instance("here")
        return [
            Room.objects.create(name=slug, slug=slug)
            for slug in ("first", "second", "third", "broken")
        ]

    first, *rest = await database_sync_to_async(setup)()
    trips = []
    real_rooms_save = save_queue._rooms_save

    def counted(lots):
        trips.append(sorted(lot.room_id for lot in lots))
        return real_rooms_save(lots)

    monkeypatch.setattr(save_queue, "_rooms_save", counted)

    def save(*, room_id, drafts):
        if room_id == rest[-1].pk:
            raise OperationalError("this room's save failed")
        return messages.messages_save(room_id=room_id, drafts=drafts)

    def post(room):
        draft = {"nickname": "al", "visitor": "v", "text": room.slug, "client_id": ""}
        return asyncio.ensure_future(
            save_queue.aqueue_post(room=room, draft=draft, save=save)
        )

    async with saves_held():
        posts = [post(first)]
        await wait_until_async(lambda: save_queue._save_trips().running, 5, "a trip")
        posts += [post(room) for room in rest]
        await wait_until_async(
            lambda: len(save_queue._save_trips().waiting) == 3, 5, "three rooms waiting"
        )
    *saved, broken = await asyncio.gather(*posts, return_exceptions=True)
    texts = [frame["text"] for frame, _delivered in saved]
    assert texts == ["first", "second", "third"]
    assert isinstance(broken, OperationalError)
    # The three rooms that came while the first saved went in one trip.
    assert trips == [[first.pk], sorted(room.pk for room in rest)]
    stored = await database_sync_to_async(
        lambda: sorted(Message.objects.values_list("text", flat=True))
    )()
    assert stored == ["first", "second", "third"]


def test_a_trip_reads_its_rooms_rules_once_for_all(db):
    instance("here")
    rooms = [Room.objects.create(name=slug, slug=slug) for slug in ("a", "b", "c")]
    Room.objects.filter(pk=rooms[1].pk).update(members_only=True)
    lots = [
        save_queue.RoomLot(
            save=messages.messages_save,
            room_id=room.pk,
            drafts=[{"nickname": "al", "visitor": "v", "text": "hi", "client_id": ""}],
            rules=sanctions.rooms_rules,
        )
        for room in rooms
    ]
    with CaptureQueriesContext(connection) as queries:
        saved = save_queue._rooms_save(lots)
    asked = [q["sql"] for q in queries if "chat_sanction" in q["sql"]]
    assert len(asked) == 1, asked
    # Each room's own rules held: the members-only room refused the visitor.
    [first], [second], [third] = saved
    assert first[1] is True and third[1] is True
    assert second.code == "members_only"
