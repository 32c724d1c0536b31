"""What the mutes and bans in force forbid, and where."""

from datetime import timedelta

from django.utils import timezone

from chat import protocol
from chat.models import Room, Sanction
from chat.services import sanctions


def _draft(visitor, *, user_id=None, moderator=False, client_id=""):
    return {
        "nickname": visitor,
        "visitor": visitor,
        "text": "hi",
        "client_id": client_id,
        "user_id": user_id,
        "moderator": moderator,
    }


def _sanction(kind, room, visitor="eve", **fields):
    return Sanction.objects.create(
        kind=kind, room=room, nickname=visitor, visitor=visitor, **fields
    )


def _codes(room, *drafts):
    refusals = sanctions.lot_refusals(room_id=room.pk, drafts=list(drafts))
    return [r.code if r else None for r in refusals]


def test_a_mute_holds_in_its_room_and_a_global_one_everywhere(room):
    other = Room.objects.create(name="Other", slug="other")
    _sanction(Sanction.Kind.MUTE, room)
    assert _codes(room, _draft("eve"), _draft("bob")) == [protocol.MUTED, None]
    assert _codes(other, _draft("eve")) == [None]
    _sanction(Sanction.Kind.MUTE, None, visitor="bob")
    assert _codes(other, _draft("bob")) == [protocol.MUTED]


def test_lifted_and_ended_sanctions_hold_no_more(room):
    _sanction(Sanction.Kind.MUTE, room, lifted=timezone.now())
    _sanction(Sanction.Kind.BAN, room, expires=timezone.now() - timedelta(seconds=1))
    assert _codes(room, _draft("eve")) == [None]
    assert (
        sanctions.join_refusal(room_id=room.pk, visitor="eve", user_id=None, address="")
        is None
    )


def test_a_ban_says_more_than_a_mute_and_moderators_are_held_to_neither(room):
    _sanction(Sanction.Kind.MUTE, room)
    _sanction(Sanction.Kind.BAN, room, expires=timezone.now() + timedelta(hours=1))
    refused = sanctions.lot_refusals(room_id=room.pk, drafts=[_draft("eve")])[0]
    assert refused.code == protocol.BANNED
    assert 3590 <= refused.retry_after <= 3600
    assert _codes(room, _draft("eve", moderator=True)) == [None]


def test_an_address_ban_holds_for_joins_from_that_address_only(room):
    _sanction(Sanction.Kind.BAN, room, visitor="eve", address="203.0.113.9")
    refused = sanctions.join_refusal(
        room_id=room.pk, visitor="new", user_id=None, address="203.0.113.9"
    )
    assert refused.code == protocol.BANNED and refused.retry_after is None
    assert (
        sanctions.join_refusal(
            room_id=room.pk, visitor="new", user_id=None, address="198.51.100.7"
        )
        is None
    )
    # A ban without an address never matches the addresses nobody knows.
    _sanction(Sanction.Kind.BAN, room, visitor="zed")
    assert (
        sanctions.join_refusal(room_id=room.pk, visitor="x", user_id=None, address="")
        is None
    )


def test_slow_mode_lets_the_first_of_a_visitors_lot_through(room):
    Room.objects.filter(pk=room.pk).update(slow_mode_seconds=10)
    codes = _codes(room, _draft("eve"), _draft("eve"), _draft("bob"))
    assert codes == [None, protocol.SLOW_MODE, None]


def test_members_only_refuses_visitors_without_an_account(room):
    Room.objects.filter(pk=room.pk).update(members_only=True)
    codes = _codes(room, _draft("eve"), _draft("una", user_id=1))
    assert codes == [protocol.MEMBERS_ONLY, None]


def test_the_rooms_banning_are_those_with_a_ban_in_force_there_or_everywhere(room):
    other = Room.objects.create(name="Other", slug="other")
    _sanction(Sanction.Kind.MUTE, other)
    _sanction(Sanction.Kind.BAN, other, lifted=timezone.now())
    assert sanctions.rooms_banning([room.pk, other.pk]) == set()
    _sanction(Sanction.Kind.BAN, room)
    assert sanctions.rooms_banning([room.pk, other.pk]) == {room.pk}
    _sanction(Sanction.Kind.BAN, None, visitor="zed")
    assert sanctions.rooms_banning([room.pk, other.pk]) == {room.pk, other.pk}
