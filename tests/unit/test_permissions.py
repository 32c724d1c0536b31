"""Who moderates a room."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission

from chat.models import Room
from chat.permissions import is_moderator


def _user(name, *, staff=True, active=True, every_room=False):
    user = get_user_model().objects.create_user(
        username=name, is_staff=staff, is_active=active
    )
    if every_room:
        user.user_permissions.add(Permission.objects.get(codename="moderate_room"))
    return get_user_model().objects.get(pk=user.pk)  # no cached permissions


def test_staff_with_the_permission_or_named_in_the_room_moderate(db):
    room = Room.objects.create(name="R", slug="r")
    other = Room.objects.create(name="O", slug="o")
    everywhere = _user("all", every_room=True)
    named = _user("named")
    room.moderators.add(named)
    assert is_moderator(everywhere, room.pk) and is_moderator(everywhere, other.pk)
    assert is_moderator(named, room.pk) and not is_moderator(named, other.pk)


def test_nobody_else_moderates(db):
    room = Room.objects.create(name="R", slug="r")
    not_staff = _user("user", staff=False, every_room=True)
    room.moderators.add(not_staff)
    inactive = _user("gone", active=False, every_room=True)
    plain_staff = _user("staff")
    for user in (not_staff, inactive, plain_staff, AnonymousUser(), None):
        assert not is_moderator(user, room.pk), user
