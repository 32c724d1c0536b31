"""Moderation and authors' own changes, over the WebSocket: every action and
every refusal a user can meet (docs/moderation.md, docs/protocol.md)."""

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from chat.models import Member, Message, ModerationRecord, Room, Sanction
from tests.unit.factories import session_of, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def moderator(joined, general):
    """A client in General as a moderator of it (staff, named in the room)."""
    session = await database_sync_to_async(signed_in)(
        "Mia", staff=True, rooms=[general]
    )
    client = await joined("Mia", session_key=session)
    return client


async def _said(client, text):
    await client.say(text)
    return await client.expect("message", text=text)


async def test_a_moderator_is_told_so_in_the_welcome(make_client, general):
    session = await database_sync_to_async(signed_in)(
        "Max", staff=True, every_room=True
    )
    client = await make_client(session_key=session)
    assert (await client.join("Max"))["you"]["moderator"] is True
    visitor = await make_client()
    assert (await visitor.join("eve"))["you"]["moderator"] is False


async def test_staff_without_the_permission_or_the_room_moderate_nothing(
    joined, general
):
    other = await database_sync_to_async(Room.objects.create)(name="O", slug="o")
    session = await database_sync_to_async(signed_in)("Sam", staff=True, rooms=[other])
    sam = await joined("Sam", session_key=session)
    eve = await joined("eve")
    await sam.send({"type": "kick", "nickname": "eve"})
    error = await sam.expect("error")
    assert error["code"] == "forbidden"
    assert await eve.nothing()


async def test_a_forged_moderator_frame_from_a_visitor_is_forbidden(joined):
    eve = await joined("eve")
    bob = await joined("bob")
    message = await _said(bob, "hello")
    for frame in (
        {"type": "mute", "nickname": "bob", "seconds": 60},
        {"type": "kick", "nickname": "bob"},
        {"type": "ban", "nickname": "bob", "seconds": None},
        {"type": "delete", "id": message["id"]},
    ):
        await eve.send(frame)
        assert (await eve.expect("error"))["code"] == "forbidden", frame
    await bob.say("still here")
    assert (await bob.expect("message"))["text"] == "still here"
    assert await database_sync_to_async(Sanction.objects.count)() == 0


async def test_a_muted_participant_reads_but_cannot_post_until_it_ends(
    moderator, joined
):
    eve = await joined("eve")
    await moderator.send(
        {"type": "mute", "nickname": "eve", "seconds": 600, "reason": "spam"}
    )
    done = await moderator.expect("moderated")
    assert done["action"] == "mute" and done["nickname"] == "eve"
    assert done["until"].endswith("Z")
    told = await eve.expect("error", code="muted")
    assert 590 <= told["retry_after"] <= 600
    await eve.say("let me speak", client_id="e1")
    refused = await eve.expect("error", code="muted")
    assert refused["client_id"] == "e1"
    assert 590 <= refused["retry_after"] <= 600
    assert "spam" in refused["message"]
    # Still reading.
    await moderator.say("calm down")
    assert (await eve.expect("message"))["text"] == "calm down"

    def end_it():
        Sanction.objects.update(expires=timezone.now() - timedelta(seconds=1))

    await database_sync_to_async(end_it)()
    await eve.say("sorry")
    assert (await eve.expect("message"))["text"] == "sorry"


async def test_a_kick_closes_the_participants_sockets_and_they_may_return(
    moderator, joined, make_client
):
    eve = await joined("eve")
    bob = await joined("bob")
    await moderator.send({"type": "kick", "nickname": "eve", "reason": "cool off"})
    assert (await moderator.expect("moderated"))["action"] == "kick"
    told = await eve.expect("error", code="kicked")
    assert "cool off" in told["message"]
    assert (await eve.ws.receive_output(timeout=2))["code"] == 4409
    left = await bob.expect("left", nickname="eve")
    assert left["participants"] == 2
    back = await make_client()
    assert (await back.join("eve"))["nickname"] == "eve"


async def test_a_ban_closes_refuses_rejoins_and_holds_for_the_session(
    moderator, joined, make_client, session_key
):
    eve = await joined("eve", session_key=session_key)
    await moderator.send(
        {"type": "ban", "nickname": "eve", "seconds": None, "reason": "abuse"}
    )
    done = await moderator.expect("moderated")
    assert done == {
        "type": "moderated",
        "action": "ban",
        "nickname": "eve",
        "until": None,
        "everywhere": False,
    }
    told = await eve.expect("error", code="banned")
    assert "retry_after" not in told
    assert (await eve.ws.receive_output(timeout=2))["code"] == 4403
    again = await make_client(session_key=session_key)
    await again.send({"type": "join", "nickname": "eve2", "last_seq": None})
    assert (await again.expect("error"))["code"] == "banned"
    assert (await again.ws.receive_output(timeout=2))["code"] == 4403
    # Someone else is welcome as before.
    other = await make_client()
    assert (await other.join("eve"))["nickname"] == "eve"


async def test_a_ban_from_every_room_holds_in_another_room(
    moderator, joined, make_client, session_key
):
    await database_sync_to_async(Room.objects.create)(name="Side", slug="side")
    eve_side = await make_client("/ws/rooms/side/", session_key=session_key)
    await eve_side.join("eve")
    await joined("eve", session_key=session_key)
    await moderator.send(
        {"type": "ban", "nickname": "eve", "seconds": 3600, "everywhere": True}
    )
    assert (await moderator.expect("moderated"))["everywhere"] is True
    assert (await eve_side.expect("error"))["code"] == "banned"
    assert (await eve_side.ws.receive_output(timeout=2))["code"] == 4403
    again = await make_client("/ws/rooms/side/", session_key=session_key)
    await again.send({"type": "join", "nickname": "eve", "last_seq": None})
    assert (await again.expect("error"))["code"] == "banned"


async def test_an_address_ban_refuses_others_from_that_address(
    moderator, joined, make_client, settings
):
    settings.CHAT_PROXY_HOPS = 1
    await joined("eve", forwarded_for="203.0.113.9")
    await moderator.send(
        {"type": "ban", "nickname": "eve", "seconds": 60, "address": True}
    )
    await moderator.expect("moderated")
    sock = await make_client(forwarded_for="203.0.113.9")
    await sock.send({"type": "join", "nickname": "newname", "last_seq": None})
    assert (await sock.expect("error"))["code"] == "banned"
    elsewhere = await make_client(forwarded_for="198.51.100.1")
    assert (await elsewhere.join("newname"))["nickname"] == "newname"


async def test_a_moderator_deletes_any_message_leaving_a_placeholder(
    moderator, joined, make_client
):
    bob = await joined("bob")
    message = await _said(bob, "something rude")
    await moderator.send({"type": "delete", "id": message["id"]})
    for client in (moderator, bob):
        assert await client.expect("deleted") == {
            "type": "deleted",
            "ids": [message["id"]],
        }
    late = await make_client()
    [kept] = (await late.join("late"))["history"]
    assert kept["id"] == message["id"] and kept["deleted"] is True
    assert kept["text"] == ""
    record = await database_sync_to_async(ModerationRecord.objects.get)()
    assert (record.action, record.nickname, record.detail) == (
        "delete",
        "bob",
        "something rude",
    )


async def test_an_author_edits_within_the_window_and_everyone_sees_it(
    joined, make_client
):
    alice = await joined("alice")
    bob = await joined("bob")
    message = await _said(alice, "helo")
    await bob.expect("message")
    await alice.send({"type": "edit", "id": message["id"], "text": "hello"})
    for client in (alice, bob):
        edited = await client.expect("edited")
        assert (edited["id"], edited["seq"], edited["text"]) == (
            message["id"],
            message["seq"],
            "hello",
        )
        assert edited["edited"].endswith("Z")
    late = await make_client()
    [kept] = (await late.join("late"))["history"]
    assert kept["text"] == "hello" and kept["edited"] == edited["edited"]


async def test_an_edit_past_the_window_is_refused(joined, settings):
    alice = await joined("alice")
    message = await _said(alice, "old")

    def age_it():
        Message.objects.update(created=timezone.now() - timedelta(minutes=16))

    await database_sync_to_async(age_it)()
    await alice.send({"type": "edit", "id": message["id"], "text": "new"})
    assert (await alice.expect("error"))["code"] == "edit_window_closed"
    # Deleting has no window.
    await alice.send({"type": "delete", "id": message["id"]})
    assert (await alice.expect("deleted"))["ids"] == [message["id"]]


async def test_nobody_edits_or_deletes_anothers_message(joined):
    alice = await joined("alice")
    eve = await joined("eve")
    message = await _said(alice, "mine")
    await eve.send({"type": "edit", "id": message["id"], "text": "yours"})
    assert (await eve.expect("error"))["code"] == "forbidden"
    await eve.send({"type": "delete", "id": message["id"]})
    assert (await eve.expect("error"))["code"] == "forbidden"
    await eve.send({"type": "edit", "id": 10**9, "text": "x"})
    assert (await eve.expect("error"))["code"] == "not_found"


async def test_the_author_is_known_by_session_not_by_nickname(
    joined, make_client, session_key
):
    alice = await joined("alice", session_key=session_key)
    message = await _said(alice, "typo")
    await alice.close()
    # The same session under another nickname, on a new socket: still theirs.
    again = await make_client(session_key=session_key)
    await again.join("alice-again")
    await again.send({"type": "edit", "id": message["id"], "text": "fixed"})
    assert (await again.expect("edited"))["text"] == "fixed"
    # The nickname alone proves nothing.
    impostor = await make_client()
    await impostor.join("alice")
    await impostor.send({"type": "delete", "id": message["id"]})
    assert (await impostor.expect("error"))["code"] == "forbidden"


async def test_edits_are_validated_and_rate_limited_as_messages(joined, settings):
    settings.CHAT_RATE_BURST = 2
    settings.CHAT_RATE_PER_SECOND = 0.01
    alice = await joined("alice")
    message = await _said(alice, "one")
    await alice.send({"type": "edit", "id": message["id"], "text": "   "})
    assert (await alice.expect("error"))["code"] == "empty_message"
    await alice.send({"type": "edit", "id": message["id"], "text": "two"})
    await alice.expect("edited")
    await alice.send({"type": "edit", "id": message["id"], "text": "three"})
    assert (await alice.expect("error"))["code"] == "rate_limited"


async def test_a_muted_author_cannot_edit(moderator, joined):
    eve = await joined("eve")
    message = await _said(eve, "first")
    await moderator.send({"type": "mute", "nickname": "eve", "seconds": 60})
    await eve.expect("error", code="muted")
    await eve.send({"type": "edit", "id": message["id"], "text": "worse"})
    assert (await eve.expect("error"))["code"] == "muted"


async def test_slow_mode_lets_one_message_through_per_period(
    moderator, joined, general
):
    def slow():
        Room.objects.filter(pk=general.pk).update(slow_mode_seconds=30)

    await database_sync_to_async(slow)()
    eve = await joined("eve")
    await _said(eve, "first")
    await eve.say("second", client_id="s2")
    refused = await eve.expect("error", code="slow_mode")
    assert refused["client_id"] == "s2" and 28 <= refused["retry_after"] <= 30
    # Moderators are not held to it.
    await _said(moderator, "one")
    await _said(moderator, "two")


async def test_members_only_refuses_visitors_not_signed_in_users(
    joined, general, make_client
):
    def members_only():
        Room.objects.filter(pk=general.pk).update(members_only=True)

    await database_sync_to_async(members_only)()
    eve = await joined("eve")
    await eve.say("hi", client_id="m1")
    assert (await eve.expect("error"))["code"] == "members_only"
    session = await database_sync_to_async(signed_in)("Una")
    una = await joined("Una", session_key=session)
    await _said(una, "members here")


async def test_moderating_someone_not_in_the_room_is_not_found(moderator):
    await moderator.send({"type": "mute", "nickname": "nobody", "seconds": 60})
    assert (await moderator.expect("error"))["code"] == "not_found"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "mute", "nickname": "eve"},
        {"type": "mute", "nickname": "eve", "seconds": 0},
        {"type": "mute", "nickname": "eve", "seconds": True},
        {"type": "ban", "seconds": 60},
        {"type": "ban", "nickname": "eve", "seconds": None, "everywhere": "yes"},
        {"type": "kick", "nickname": "eve", "reason": 5},
        {"type": "edit", "id": "1", "text": "x"},
        {"type": "delete", "id": -1},
    ],
)
async def test_malformed_moderation_frames_are_invalid(moderator, frame):
    await moderator.send(frame)
    assert (await moderator.expect("error"))["code"] == "invalid_frame"
    await moderator.say("still open")
    await moderator.expect("message", text="still open")


async def test_a_moderator_acts_on_the_author_of_a_message_who_left(
    moderator, joined, make_client, session_key
):
    eve = await joined("eve", session_key=session_key)
    message = await _said(eve, "hit and run")
    await eve.close()
    await moderator.send({"type": "ban", "id": message["id"], "seconds": 60})
    assert (await moderator.expect("moderated"))["nickname"] == "eve"
    back = await make_client(session_key=session_key)
    await back.send({"type": "join", "nickname": "eve", "last_seq": None})
    assert (await back.expect("error"))["code"] == "banned"


async def test_an_account_ban_holds_on_the_users_other_devices(
    moderator, joined, make_client
):
    session = await database_sync_to_async(signed_in)("Una")
    await joined("Una", session_key=session)
    await moderator.send({"type": "ban", "nickname": "Una", "seconds": 600})
    await moderator.expect("moderated")
    phone = await make_client(
        session_key=await database_sync_to_async(session_of)("Una")
    )
    await phone.send({"type": "join", "nickname": "Una", "last_seq": None})
    assert (await phone.expect("error"))["code"] == "banned"


async def test_a_signed_in_author_edits_from_another_device(joined, make_client):
    session = await database_sync_to_async(signed_in)("Una")
    laptop = await joined("Una", session_key=session)
    message = await _said(laptop, "sent from the laptop")
    await laptop.close()
    phone = await make_client(
        session_key=await database_sync_to_async(session_of)("Una")
    )
    await phone.join("Una")
    await phone.send(
        {"type": "edit", "id": message["id"], "text": "fixed on the phone"}
    )
    assert (await phone.expect("edited"))["text"] == "fixed on the phone"


async def test_a_kick_this_instance_missed_holds_at_the_next_message(
    joined, make_client, general
):
    eve = await joined("eve")

    def kick_elsewhere():
        # As another instance records it while this one hears nothing of it.
        visitor = Member.objects.get(nickname="eve").visitor
        Sanction.objects.create(
            kind=Sanction.Kind.KICK,
            room=general,
            nickname="eve",
            visitor=visitor,
            expires=timezone.now() + timedelta(days=1),
        )

    await database_sync_to_async(kick_elsewhere)()
    await eve.say("am I still here?", client_id="k1")
    refused = await eve.expect("error")
    assert (refused["code"], refused["client_id"]) == ("kicked", "k1")
    assert (await eve.ws.receive_output(timeout=2))["code"] == 4409
    # A kick does not hold for the next join.
    back = await make_client()
    await back.join("eve")
    await back.say("back")
    assert (await back.expect("message"))["text"] == "back"
