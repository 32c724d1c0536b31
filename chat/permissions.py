"""Who may moderate a room: staff with the permission for every room, or staff
named among the room's moderators in the admin (docs/moderation.md)."""

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser

from .models import Room

MODERATE_EVERY_ROOM = "chat.moderate_room"


def is_moderator(user: AbstractBaseUser | AnonymousUser | None, room_id: int) -> bool:
    """Whether `user` moderates the room; asks the database only for staff."""
    if user is None or not user.is_authenticated:
        return False
    if not (user.is_active and getattr(user, "is_staff", False)):
        return False
    if user.has_perm(MODERATE_EVERY_ROOM):  # type: ignore[attr-defined] # a User
        return True
    return Room.moderators.through.objects.filter(
        room_id=room_id, user_id=user.pk
    ).exists()
