"""
chat/services/instances.py: the sweep of instances that stopped beating, with
sockets of the whole ASGI application in the room.
"""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.models import Connection, Instance, Member
from chat.services import instances, presence

pytestmark = pytest.mark.django_db(transaction=True)


async def test_dead_instance_ghosts_are_swept_and_announced(
    joined, make_client, general
):
    alice = await joined("alice")

    def ghost():
        Instance.objects.create(
            name="dead", heartbeat=timezone.now() - timedelta(seconds=120)
        )
        member = Member.objects.create(room=general, nickname="ghost", visitor="v")
        Connection.objects.create(id="g1", member=member, instance_id="dead")

    await database_sync_to_async(ghost)()
    # Ghosts count for nobody, even before the sweep.
    bob = await make_client()
    welcome = await bob.join("bob")
    assert (welcome["participants"], welcome["users"]) == (2, ["alice", "bob"])
    departures = await database_sync_to_async(instances.instances_sweep)()
    assert [(d.nickname, d.participants) for d in departures] == [("ghost", 2)]
    await presence.aroom_leave_announce(departures[0])
    assert (await alice.expect("left", nickname="ghost"))["participants"] == 2
    # A second sweep (another instance's) finds nothing left to announce.
    assert await database_sync_to_async(instances.instances_sweep)() == []
