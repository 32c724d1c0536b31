"""Reads: the lobby's counts, who is in a room, and history pages by seq."""

import pytest

from chat import selectors
from chat.models import Message, Room
from tests.unit.factories import instance, join, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def room():
    instance("here")
    return Room.objects.create(name="Test", slug="test")


def history(room, **kwargs):
    page = selectors.room_history(room_id=room.pk, **kwargs)
    return [m.seq for m in page.messages], page.through, page.has_more


def test_lobby_counts_people_with_a_live_connection_on_any_instance(room):
    instance("there")
    instance("dead", alive=False)
    Room.objects.create(name="Quiet", slug="quiet")
    archived = Room.objects.create(name="Old", slug="old", archived=True)
    join(room, "alice")
    join(room, "alice")  # a second tab counts once
    join(room, "bob", on="there")  # another live process
    join(room, "carol", on="dead")
    join(room, "carol")  # one live connection is enough
    join(room, "ghost", on="dead")  # only a dead process's connection
    join(archived, "dave")

    lobby = {r.slug: r.online for r in selectors.rooms_for_lobby()}

    # General comes from a migration; archived rooms are not listed.
    assert lobby == {"general": 0, "quiet": 0, "test": 3}
    assert [r.name for r in selectors.rooms_for_lobby()] == ["General", "Quiet", "Test"]


def test_participants_are_live_members_sorted_ignoring_case(room):
    instance("dead", alive=False)
    for nickname in ("bob", "Alice", "carl"):
        join(room, nickname)
    join(room, "Zed", on="dead")
    assert selectors.room_participants(room_id=room.pk) == (3, ["Alice", "bob", "carl"])


def test_after_pages_forward_through_the_newest(room):
    for n in range(5):
        say(room, f"m{n}")
    assert history(room, after=0, limit=2) == ([1, 2], 2, True)
    assert history(room, after=2, limit=2) == ([3, 4], 4, True)
    assert history(room, after=4, limit=2) == ([5], 5, False)
    assert history(room, after=5, limit=2) == ([], 5, False)


def test_through_passes_the_holes_deleted_messages_leave(room):
    for n in range(6):
        say(room, f"m{n}")
    Message.objects.filter(room=room, seq__in=[2, 3, 5, 6]).delete()
    assert history(room, after=0, limit=1) == ([1], 1, True)
    # The newest seqs are holes: the cursor still reaches the room's last seq, so
    # a reader catching up does not ask for them again and again.
    assert history(room, after=1, limit=1) == ([4], 6, False)
    assert history(room, after=4, limit=1) == ([], 6, False)


def test_a_cursor_beyond_the_last_seq_is_brought_back(room):
    say(room, "one")
    # A cursor from a stale client must not move the reader past seqs that the
    # next messages will take.
    assert history(room, after=40, limit=10) == ([], 1, False)


def test_before_pages_back_oldest_first(room):
    for n in range(5):
        say(room, f"m{n}")
    assert history(room, before=5, limit=2) == ([3, 4], 4, True)
    assert history(room, before=3, limit=2) == ([1, 2], 2, False)
    assert history(room, before=1, limit=2) == ([], 0, False)
    # An older page covers only what lies before `before`.
    assert history(room, before=99, limit=2) == ([4, 5], 5, True)


def test_default_page_is_the_newest_messages(room):
    assert history(room, limit=2) == ([], 0, False)
    for n in range(5):
        say(room, f"m{n}")
    assert history(room, limit=2) == ([4, 5], 5, True)
    assert history(room, limit=5) == ([1, 2, 3, 4, 5], 5, False)


def test_history_holds_only_its_own_room(room):
    other = Room.objects.create(name="Other", slug="other")
    say(other, "elsewhere")
    say(room, "here")
    page = selectors.room_history(room_id=room.pk, limit=10)
    assert [m.text for m in page.messages] == ["here"]
