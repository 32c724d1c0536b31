"""chat/services/messages.py: seqs, resent messages and lots of messages."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import OperationalError

from chat.models import Message, Room
from chat.protocol import ProtocolError
from chat.services import messages
from tests.unit.factories import say
from tests.unit.services.threads import needs_server_database, own_connection


def test_seqs_count_up_without_gaps_in_each_room(room):
    other = Room.objects.create(name="Other", slug="other")
    first = [say(room, "a").seq, say(room, "b").seq]
    assert say(other, "x").seq == 1
    first.append(say(room, "c").seq)
    assert first == [1, 2, 3]
    room.refresh_from_db()
    assert room.last_seq == 3


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
    needs_server_database()
    room = Room.objects.create(name="Busy", slug="busy")
    with ThreadPoolExecutor(4) as pool:
        runs = list(
            pool.map(own_connection, [save] * 4, [room.pk] * 4, "abcd", [count] * 4)
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


def test_archived_room_takes_no_message_and_no_seq(room):
    say(room, "before")
    Room.objects.filter(pk=room.pk).update(archived=True)
    with pytest.raises(ProtocolError) as caught:
        say(room, "after")
    assert caught.value.code == "room_archived"
    assert Message.objects.filter(room=room).count() == 1
    room.refresh_from_db()
    assert room.last_seq == 1
