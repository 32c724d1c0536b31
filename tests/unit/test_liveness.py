"""
This process's liveness (chat/liveness.py), through the whole ASGI application:
the heartbeat prunes what a failed leave left behind, and puts back the sockets
of an instance another took for dead.
"""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.hub import get_hub
from chat.models import Connection, Member, Sanction
from chat.services import instances, presence

pytestmark = pytest.mark.django_db(transaction=True)


async def test_instance_taken_for_dead_puts_its_sockets_back(
    joined, make_client, settings
):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob")
    # Another instance reaped this one (as after a long database outage).
    departures = await database_sync_to_async(instances.instance_remove)(
        instance=settings.CHAT_INSTANCE_ID
    )
    for departure in departures:
        await presence.aroom_leave_announce(departure)
    await bob.expect("left", nickname="alice")
    # The next heartbeat finds the row gone and records the sockets again.
    await get_hub().liveness.beat()
    await bob.expect("joined", nickname="alice")
    carol = await make_client()
    welcome = await carol.join("carol")
    assert welcome["users"] == ["alice", "bob", "carol"]


async def test_heartbeat_prunes_a_connection_whose_leave_failed(
    joined, general, settings
):
    alice = await joined("alice")

    def orphan():
        # What a leave that failed (a database outage) leaves behind.
        member = Member.objects.create(room=general, nickname="gone", visitor="v")
        Connection.objects.create(
            id="orphan",
            member=member,
            instance_id=settings.CHAT_INSTANCE_ID,
            opened=timezone.now() - timedelta(minutes=5),
        )

    await database_sync_to_async(orphan)()
    await get_hub().liveness.beat()
    assert (await alice.expect("left", nickname="gone"))["participants"] == 1
    assert await database_sync_to_async(Connection.objects.count)() == 1


async def test_a_socket_that_cannot_be_restored_after_a_reap_is_closed_to_rejoin(
    joined, settings, monkeypatch
):
    alice = await joined("alice")
    await database_sync_to_async(instances.instance_remove)(
        instance=settings.CHAT_INSTANCE_ID
    )

    async def still_failing(**kwargs):
        from django.db import OperationalError

        raise OperationalError("the database went away again")

    monkeypatch.setattr(presence, "aroom_join", still_failing)
    await get_hub().liveness.beat()
    closed = await alice.ws.receive_output(timeout=5)
    while closed["type"] != "websocket.close":
        closed = await alice.ws.receive_output(timeout=5)
    assert closed["code"] == 1012


async def test_a_restore_that_finds_its_connection_recorded_keeps_the_socket(
    joined, settings
):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined")
    # Taken for dead and restored twice (a sweep that raced the heartbeat).
    for _ in range(2):
        await database_sync_to_async(instances.instance_remove)(
            instance=settings.CHAT_INSTANCE_ID
        )
        await get_hub().liveness.beat()
    await bob.say("still here", client_id="s-1")
    assert (await alice.expect("message"))["text"] == "still here"
    assert (await bob.expect("message"))["client_id"] == "s-1"


def _sanction_given_elsewhere(kind, nickname):
    """A ban or kick recorded by another instance, whose layer event this one
    never got (Redis away)."""
    member = Member.objects.get(nickname=nickname)
    return Sanction.objects.create(
        kind=kind,
        room_id=member.room_id,
        nickname=nickname,
        visitor=member.visitor,
        expires=timezone.now() + timedelta(hours=1),
    )


@pytest.mark.parametrize(
    ("kind", "code", "close"),
    [(Sanction.Kind.BAN, "banned", 4403), (Sanction.Kind.KICK, "kicked", 4409)],
)
async def test_the_heartbeat_closes_sockets_a_missed_ban_or_kick_holds_for(
    joined, kind, code, close
):
    eve = await joined("eve")
    bob = await joined("bob")
    await database_sync_to_async(_sanction_given_elsewhere)(kind, "eve")
    await get_hub().liveness.beat()
    assert (await eve.expect("error"))["code"] == code
    assert (await eve.ws.receive_output(timeout=2))["code"] == close
    await bob.expect("left", nickname="eve")
    # Once: the next beat finds nothing more to do.
    await get_hub().liveness.beat()
    assert await bob.nothing()
