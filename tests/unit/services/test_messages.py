"""Writes: seqs, resent messages, nicknames held in a room, and leaving."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError, connection

from chat import events
from chat.models import Member, Message, Room
from chat.protocol import ProtocolError
from chat.services import messages, moderation, presence

from .factories import instance, join, say


@pytest.fixture
def room(db):
    instance("here")
    return Room.objects.create(name="Test", slug="test")


def test_seqs_count_up_without_gaps_in_each_room(room):
    other = Room.objects.create(name="Other", slug="other")
    first = [say(room, "a").seq, say(room, "b").seq]
    assert say(other, "x").seq == 1
    first.append(say(room, "c").seq)
    assert first == [1, 2, 3]
    room.refresh_from_db()
    assert room.last_seq == 3


def _own_connection(function, *args):
    """Run in a thread with its own database connection, closed after."""
    try:
        return function(*args)
    finally:
        connection.close()


def _save_many(room_id, sender, count):
    return [
        messages.messages_save(
            room_id=room_id,
            drafts=[
                {"nickname": sender, "visitor": sender, "text": "hi", "client_id": ""}
            ],
        )[0][0].seq
        for _n in range(count)
    ]


def _needs_server_database():
    if connection.vendor == "sqlite":
        # SQLite's in-memory test database answers a second writer with "table is
        # locked" instead of waiting as the file database (busy timeout) does.
        pytest.skip("concurrent writers need a server database (DATABASE_URL)")


def _save_lots(room_id, sender, count):
    return [
        message.seq
        for n in range(count)
        for message, _created in messages.messages_save(
            room_id=room_id, drafts=_drafts(f"x{n}", f"y{n}", f"z{n}", visitor=sender)
        )
    ]


# Four senders, 15 messages each: one at a time, or in lots of three.
@pytest.mark.parametrize(
    ("save", "count", "lot"), [(_save_many, 15, 1), (_save_lots, 5, 3)]
)
@pytest.mark.django_db(transaction=True)
def test_concurrent_senders_share_one_gapless_sequence(save, count, lot):
    _needs_server_database()
    room = Room.objects.create(name="Busy", slug="busy")
    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(_own_connection, [save] * 4, [room.pk] * 4, "abcd", [count] * 4)
        )
    assert sorted(seq for run in runs for seq in run) == list(range(1, 61))
    assert all(run == sorted(run) for run in runs)
    # A lot's seqs are consecutive.
    assert all(
        run[i + lot - 1] - run[i] == lot - 1 for run in runs for i in range(0, 15, lot)
    )


def test_resent_client_id_returns_the_saved_message(room):
    [(first, created)] = messages.messages_save(
        room_id=room.pk,
        drafts=[{"nickname": "al", "visitor": "v1", "text": "hi", "client_id": "c1"}],
    )
    [(again, created_again)] = messages.messages_save(
        room_id=room.pk,
        drafts=[{"nickname": "al", "visitor": "v1", "text": "hi", "client_id": "c1"}],
    )
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    # The resend took no seq: the next message follows on.
    assert say(room, "next").seq == 2
    # Another visitor's client may well pick the same id.
    [(theirs, created)] = messages.messages_save(
        room_id=room.pk,
        drafts=[{"nickname": "bo", "visitor": "v2", "text": "hi", "client_id": "c1"}],
    )
    assert created and theirs.seq == 3


def _drafts(*texts, visitor="v1"):
    return [
        {"nickname": "al", "visitor": visitor, "text": text, "client_id": f"c-{text}"}
        for text in texts
    ]


def test_a_lot_is_saved_in_its_order_with_consecutive_seqs(room):
    say(room, "before")
    results = messages.messages_save(room_id=room.pk, drafts=_drafts("a", "b", "c"))
    assert [(m.text, m.seq, created) for m, created in results] == [
        ("a", 2, True),
        ("b", 3, True),
        ("c", 4, True),
    ]
    stored = Message.objects.filter(room=room).order_by("seq")
    assert [(m.pk, m.text) for m in stored[1:]] == [(m.pk, m.text) for m, _ in results]


def test_a_resend_in_a_lot_does_not_stop_the_others(room):
    [(first, _created)] = messages.messages_save(room_id=room.pk, drafts=_drafts("a"))
    # "a" again (a resend after a reconnect), and "b" twice in the same lot.
    results = messages.messages_save(
        room_id=room.pk, drafts=_drafts("b", "a", "c", "b")
    )
    assert [(m.text, m.seq, created) for m, created in results] == [
        ("b", 2, True),
        ("a", 1, False),
        ("c", 3, True),
        ("b", 2, False),
    ]
    assert results[1][0].pk == first.pk
    assert Message.objects.filter(room=room).count() == 3
    room.refresh_from_db()
    assert room.last_seq == 3


def test_a_failure_saving_one_of_a_lot_one_at_a_time_is_that_ones_alone(
    room, monkeypatch
):
    messages.messages_save(room_id=room.pk, drafts=_drafts("a"))
    save_one = messages._save_one

    def database_gone_for_c(message):
        if message.text == "c":
            raise OperationalError("server closed the connection unexpectedly")
        return save_one(message)

    monkeypatch.setattr(messages, "_save_one", database_gone_for_c)
    # The resend of "a" sends the lot through one-at-a-time saving.
    a, b, c = messages.messages_save(room_id=room.pk, drafts=_drafts("a", "b", "c"))
    assert (a[0].text, a[1]) == ("a", False)
    assert (b[0].text, b[0].seq, b[1]) == ("b", 2, True)
    assert isinstance(c, OperationalError)


def test_an_archived_room_refuses_every_message_of_a_lot(room):
    Room.objects.filter(pk=room.pk).update(archived=True)
    results = messages.messages_save(room_id=room.pk, drafts=_drafts("a", "b"))
    assert [r.code for r in results] == ["room_archived"] * 2
    assert results[0] is not results[1]  # each sender's error is its own
    assert not Message.objects.exists()


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


def test_archived_room_takes_no_message_and_no_seq(room):
    say(room, "before")
    Room.objects.filter(pk=room.pk).update(archived=True)
    with pytest.raises(ProtocolError) as caught:
        say(room, "after")
    assert caught.value.code == "room_archived"
    assert Message.objects.filter(room=room).count() == 1
    room.refresh_from_db()
    assert room.last_seq == 1


def test_nickname_is_taken_case_insensitively_by_another_visitor(room):
    join(room, "Alice")
    with pytest.raises(ProtocolError) as caught:
        join(room, "aLICE", visitor="someone-else")
    assert caught.value.code == "nickname_taken"
    assert "Alice" in caught.value.message
    assert list(Member.objects.values_list("nickname", flat=True)) == ["Alice"]


def test_same_visitor_twice_is_one_person(room):
    _conn, first = join(room, "Alice", visitor="v1")
    _conn, second = join(room, "alice", visitor="v1")
    assert (first.arrived, second.arrived) == (True, False)
    # The nickname keeps the case it was claimed with.
    assert (second.nickname, second.participants, second.users) == (
        "Alice",
        1,
        ["Alice"],
    )


def test_ghost_on_a_dead_instance_frees_the_nickname(room):
    instance("dead", alive=False)
    join(room, "alice", visitor="old", on="dead")
    _conn, presence = join(room, "Alice", visitor="new")
    assert presence.arrived
    assert (presence.nickname, presence.participants) == ("Alice", 1)
    assert Member.objects.get().visitor == "new"


def test_leave_departs_only_with_the_last_connection(room):
    join(room, "bob")
    tab1, _p = join(room, "alice", visitor="v1")
    tab2, _p = join(room, "alice", visitor="v1")
    assert presence.room_leave(connection_id=tab1) is None
    departure = presence.room_leave(connection_id=tab2)
    assert departure == presence.Departure(
        room_id=room.pk, nickname="alice", participants=1
    )
    assert presence.room_leave(connection_id=tab2) is None  # already gone
    assert list(Member.objects.values_list("nickname", flat=True)) == ["bob"]


def test_a_dead_instance_connection_does_not_keep_a_member_in(room):
    instance("dead", alive=False)
    join(room, "alice", visitor="v1", on="dead")
    live, _p = join(room, "alice", visitor="v1")
    assert presence.room_leave(connection_id=live).nickname == "alice"


@pytest.mark.django_db(transaction=True)
async def test_leave_announces_only_when_the_member_is_gone():
    def setup():
        instance("here")
        room = Room.objects.create(name="Test", slug="test")
        tabs = [join(room, "alice", visitor="v1")[0] for _n in range(2)]
        return room, tabs

    room, (tab1, tab2) = await database_sync_to_async(setup)()
    layer = get_channel_layer()
    listener = await layer.new_channel()
    await layer.group_add(events.group_name(room.pk), listener)

    assert await presence.aroom_leave(connection_id=tab1) is None
    assert await presence.aroom_leave(connection_id=tab2) is not None
    event = await asyncio.wait_for(layer.receive(listener), 5)
    assert event["frames"] == [{"type": "left", "nickname": "alice", "participants": 0}]
    # The first tab closing announced nothing.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(listener), 0.2)


def _leave(connection_id):
    return presence.room_leave(connection_id=connection_id)


@pytest.mark.django_db(transaction=True)
def test_a_leave_racing_the_prune_announces_once_and_raises_nothing():
    _needs_server_database()
    room = Room.objects.create(name="Race", slug="race")
    instance()
    for _round in range(20):
        conn, _presence = join(room, "alice", visitor="v1")
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(_own_connection, [_leave] * 2, [conn, conn]))
        assert sum(result is not None for result in results) == 1
    assert not Member.objects.exists()


@pytest.mark.django_db
def test_a_bulk_delete_is_announced_in_frames_of_bounded_size(monkeypatch):
    room = Room.objects.create(name="Bulk", slug="bulk")
    Message.objects.bulk_create(
        Message(room=room, seq=seq, nickname="spam", text="x") for seq in range(1, 2501)
    )
    sent = []
    monkeypatch.setattr(
        events, "room_send_sync", lambda room_id, frame, **kw: sent.append(frame)
    )
    moderation.messages_delete(messages=Message.objects.filter(room=room))
    assert [len(f["ids"]) for f in sent] == [1000, 1000, 500]
    ids = [i for f in sent for i in f["ids"]]
    assert ids == sorted(set(ids))
    assert not Message.objects.filter(room=room).exists()
