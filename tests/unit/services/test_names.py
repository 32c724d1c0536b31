"""chat/services/names.py: registered users' names, which only they may take."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser

from chat.models import RegisteredName
from chat.nicknames import skeleton
from chat.protocol import ProtocolError
from chat.services import names
from tests.unit.factories import join
from tests.unit.test_nicknames import ADMIN_LOOK_ALIKES, join_as, refused_join


def make_user(username):
    # No password: hashing one takes longer than the rest of a test.
    return get_user_model().objects.create_user(username=username)


@pytest.mark.parametrize("look_alike", ADMIN_LOOK_ALIKES)
def test_a_look_alike_of_a_registered_name_is_that_users_alone(room, look_alike):
    admin = make_user("admin")
    other = make_user("someone")
    message = refused_join(room, look_alike)
    assert "registered user's name; sign in to use it" in message
    with pytest.raises(ProtocolError):
        join_as(other, room, look_alike, visitor="v-other")
    presence = join_as(admin, room, look_alike, visitor="v-admin")
    assert presence.arrived


def test_case_folding_applies_to_registered_names(room):
    make_user("strasse")
    assert "registered user's name" in refused_join(room, "straße")
    assert "registered user's name" in refused_join(room, "STRASSE")


def test_registered_names_follow_renames_and_deletions(room):
    user = make_user("carol")
    user.username = "dave"
    user.save()
    _conn, presence = join(room, "c\u0430rol")  # free again, look-alike or not
    assert presence.arrived
    assert "registered user's name" in refused_join(room, "d\u0430ve")
    assert RegisteredName.objects.get().skeleton == skeleton("dave")
    user.delete()
    assert not RegisteredName.objects.exists()
    assert join(room, "dave")[1].arrived


def test_of_look_alike_usernames_the_first_registered_holds_the_name(room):
    first = make_user("Alice")
    second = make_user("alice")  # Django's usernames are case-sensitive
    assert RegisteredName.objects.get().user_id == first.pk
    with pytest.raises(ProtocolError):
        join_as(second, room, "alice", visitor="v2")
    assert join_as(first, room, "alice", visitor="v1").arrived
    # Renamed, the second user's name is recorded as any other.
    second.username = "bob"
    second.save()
    assert RegisteredName.objects.get(user=second).skeleton == skeleton("bob")


def test_a_registered_name_costs_a_join_one_query(room, django_assert_num_queries):
    for n in range(20):
        make_user(f"user{n}")
    assert "registered user's name" in refused_join(room, "us\u0435r7")
    with django_assert_num_queries(1):
        assert names.registered_name_clash(skeleton("us\u0435r7"), AnonymousUser())
