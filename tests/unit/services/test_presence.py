"""chat/services/presence.py: nicknames held in a room, and leaving."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import AnonymousUser
from django.db import OperationalError, connection

from chat import events, selectors
from chat.models import Connection, Member, Room, Sanction
from chat.protocol import ProtocolError
from chat.services import presence
from tests.conftest import database_thread_held
from tests.harness.waiting import wait_until_async
from tests.unit.factories import instance, join, say
from tests.unit.services.threads import needs_server_database, own_connection


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
    needs_server_database()
    room = Room.objects.create(name="Race", slug="race")
    instance()
    for _round in range(20):
        conn, _presence = join(room, "alice", visitor="v1")
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(own_connection, [_leave] * 2, [conn, conn]))
        assert sum(result is not None for result in results) == 1
    assert not Member.objects.exists()


def _request(room, nickname, *, visitor=None, last_seq=None):
    return presence.JoinRequest(
        room_id=room.pk,
        nickname=nickname,
        last_seq=last_seq,
        visitor=visitor or f"visitor-of-{nickname}",
        user=AnonymousUser(),
        connection_id=f"lot-{nickname}",
        instance="here",
    )


def test_every_join_of_a_lot_is_welcomed_with_everyone_in_it(room):
    say(room, "before")
    results = presence.room_join_lot(
        [_request(room, name) for name in ("carl", "alice", "bob")]
    )
    for (page, joined), name in zip(results, ("carl", "alice", "bob"), strict=True):
        assert (joined.nickname, joined.arrived) == (name, True)
        assert (joined.participants, joined.users) == (3, ["alice", "bob", "carl"])
        assert [m.text for m in page.messages] == ["before"]


def test_a_taken_nickname_refuses_only_its_join_in_the_lot(room):
    join(room, "alice")
    taken, invalid, (_page, bob) = presence.room_join_lot(
        [
            _request(room, "Alice", visitor="someone-else"),
            _request(room, " "),
            _request(room, "bob"),
        ]
    )
    assert isinstance(taken, ProtocolError) and taken.code == "nickname_taken"
    assert isinstance(invalid, ProtocolError) and invalid.code == "invalid_nickname"
    assert (bob.participants, bob.users) == (2, ["alice", "bob"])


def test_a_lot_whose_online_list_cannot_be_read_leaves_nothing_behind(
    room, monkeypatch
):
    def unreadable(**_kwargs):
        raise OperationalError("the database went away")

    monkeypatch.setattr(selectors, "room_participants", unreadable)
    results = presence.room_join_lot([_request(room, "alice"), _request(room, "bob")])
    assert all(isinstance(result, OperationalError) for result in results)
    assert not Member.objects.exists()
    assert not Connection.objects.exists()


def test_a_lot_of_joins_costs_five_statements_a_claim(
    room, django_assert_max_num_queries
):
    # Its page (two), the registered names, the bans, the online list and the
    # savepoint around the lot, once; then each claim: a savepoint, the
    # visitor's members, the new member, the connection, the release, and on
    # PostgreSQL the visitor's lock. It was eight a claim (nine).
    per_claim = 6 if connection.vendor == "postgresql" else 5
    names = [f"user{i}" for i in range(20)]
    with django_assert_max_num_queries(7 + per_claim * len(names)):
        results = presence.room_join_lot([_request(room, name) for name in names])
    assert [joined.nickname for _page, joined in results] == names


def test_a_ban_in_the_room_refuses_only_its_visitors_join_in_the_lot(room):
    Sanction.objects.create(
        kind=Sanction.Kind.BAN, room=room, nickname="eve", visitor="visitor-of-eve"
    )
    banned, (_page, bob) = presence.room_join_lot(
        [_request(room, "eve"), _request(room, "bob")]
    )
    assert isinstance(banned, ProtocolError) and banned.code == "banned"
    assert bob.users == ["bob"]


def test_a_lot_the_database_fails_is_claimed_again_one_by_one(room, monkeypatch):
    real_lock = presence._lock_visitor_in_room
    failed = []

    def fails_once_for_bob(room_id, visitor):
        if visitor == "visitor-of-bob" and not failed:
            failed.append(visitor)
            raise OperationalError("deadlock detected")
        real_lock(room_id, visitor)

    monkeypatch.setattr(presence, "_lock_visitor_in_room", fails_once_for_bob)
    results = presence.room_join_lot(
        [_request(room, name) for name in ("alice", "bob", "carl")]
    )
    assert failed
    for _page, joined in results:
        assert (joined.participants, joined.users) == (3, ["alice", "bob", "carl"])
    assert Member.objects.count() == 3
    assert Connection.objects.count() == 3


async def _room_here():
    def setup():
        instance("here")
        return Room.objects.create(name="Test", slug="test")

    return await database_sync_to_async(setup)()


def _welcome(room, nickname):
    return presence.aroom_welcome(
        room=room,
        nickname=nickname,
        last_seq=None,
        visitor=f"visitor-of-{nickname}",
        user=AnonymousUser(),
        connection_id=f"conn-{nickname}",
        instance="here",
        max_bytes=65536,
    )


@pytest.mark.django_db(transaction=True)
async def test_joins_that_come_at_once_go_in_one_lot_and_see_each_other():
    room = await _room_here()
    names = ["ann", "ben", "cat", "dan"]
    queue = presence._join_trips()
    async with database_thread_held():
        joins = [asyncio.ensure_future(_welcome(room, "ann"))]
        await wait_until_async(
            lambda: queue.running and not queue.waiting, 5, "the first join's lot"
        )
        joins += [asyncio.ensure_future(_welcome(room, name)) for name in names[1:]]
        await wait_until_async(
            lambda: len(queue.waiting) == 3, 5, "joins waiting for the first's lot"
        )
    welcomes = [frame for _presence, frame in await asyncio.gather(*joins)]
    assert welcomes[0]["users"] == ["ann"]
    for frame in welcomes[1:]:
        assert (frame["participants"], frame["users"]) == (4, names)


@pytest.mark.django_db(transaction=True)
async def test_a_join_given_up_while_its_lot_ran_leaves_nothing_behind():
    room = await _room_here()
    async with database_thread_held():
        gone = asyncio.ensure_future(_welcome(room, "gone"))
        queue = presence._join_trips()
        await wait_until_async(
            lambda: queue.running and not queue.waiting, 5, "the join's lot"
        )
        gone.cancel()
    await wait_until_async(lambda: not queue.undoing and not queue.running, 5, "undo")
    members = await database_sync_to_async(lambda: list(Member.objects.all()))()
    assert members == []
