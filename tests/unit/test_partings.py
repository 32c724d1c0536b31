"""The grace a closed socket keeps its place in the room for (chat/partings.py)."""

import asyncio
import itertools
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.hub import get_hub
from chat.models import Connection

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def grace(settings):
    settings.CHAT_PRESENCE_GRACE_SECONDS = 1.0
    return settings.CHAT_PRESENCE_GRACE_SECONDS


def _connections_of(nickname):
    return Connection.objects.filter(member__nickname=nickname).count()


async def connections_of(nickname):
    return await database_sync_to_async(_connections_of)(nickname)


async def until_connections(nickname, count, timeout=5.0):
    """Wait until `nickname` holds `count` recorded connections."""
    # Polled: a row in the database, with no event to wait on.
    async with asyncio.timeout(timeout):
        for _poll in itertools.count():
            if await connections_of(nickname) == count:
                return
            await asyncio.sleep(0.05)


async def test_a_return_within_the_grace_is_neither_a_leave_nor_a_join(
    grace, joined, make_client, session_key
):
    alice = await joined("alice")
    bob = await joined("bob", session_key=session_key)
    await alice.expect("joined", nickname="bob")
    await bob.close()
    # A reload: the same visitor, the same nickname, a new socket.
    again = await make_client(session_key=session_key)
    welcome = await again.join("bob")
    assert welcome["users"] == ["alice", "bob"]
    # The closed socket's grace runs out; the nickname is held by the new one.
    await until_connections("bob", 1, timeout=grace + 5)
    await again.say("back")
    _frame, seen = await alice.receive_until("message", text="back")
    assert [frame["type"] for frame in seen] == ["message"]


async def test_a_socket_gone_for_good_leaves_when_the_grace_runs_out(
    grace, joined, make_client
):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob")
    await bob.close()
    # Within the grace, still online for whoever arrives.
    carol = await make_client()
    assert (await carol.join("carol"))["users"] == ["alice", "bob", "carol"]
    left = await alice.expect("left", nickname="bob", timeout=grace + 5)
    assert left["participants"] == 2


async def test_a_leave_frame_is_told_at_once(settings, joined):
    # A grace longer than the wait below: a leave said is not kept.
    settings.CHAT_PRESENCE_GRACE_SECONDS = 20.0
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob")
    await bob.send({"type": "leave"})
    assert (await alice.expect("left", nickname="bob", timeout=5))["participants"] == 1


async def test_the_heartbeat_leaves_a_connection_in_its_grace_alone(settings, joined):
    settings.CHAT_PRESENCE_GRACE_SECONDS = 20.0
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob")
    await bob.close()

    def opened_long_ago():
        # Past the age the prune looks at (chat/liveness.py).
        Connection.objects.filter(member__nickname="bob").update(
            opened=timezone.now() - timedelta(minutes=5)
        )

    await database_sync_to_async(opened_long_ago)()
    await get_hub().liveness.beat()
    assert await connections_of("bob") == 1
    await alice.say("anyone?")
    _frame, seen = await alice.receive_until("message", text="anyone?")
    assert [frame["type"] for frame in seen] == ["message"]
