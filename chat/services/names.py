"""
Registered users' names: a nickname whose skeleton (chat/nicknames.py) is a
registered user's username is that user's alone.

RegisteredName follows the users through a post_save signal on the user model
(chat/signals.py), not through a call from the code that saves them: users are
saved by Django's own code (the auth admin, createsuperuser, changepassword,
loaddata), which calls no service of this project.
"""

from collections.abc import Iterable, Mapping

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction

from .. import nicknames
from ..models import SKELETON_MAX_LENGTH, RegisteredName


def registered_name_clash(
    skeleton: str,
    user: AbstractBaseUser | AnonymousUser | None,
    owners: Mapping[str, int] | None = None,
) -> bool:
    """Whether a registered user other than `user` has a username of that
    skeleton: one indexed lookup (RegisteredName), however many users, or none
    with `owners` (registered_owners of a lot's skeletons, this one among them)."""
    if owners is None:
        owners = registered_owners([skeleton])
    owner = owners.get(skeleton)
    if owner is None:
        return False
    return not (user is not None and user.is_authenticated and owner == user.pk)


def registered_owners(skeletons: Iterable[str]) -> dict[str, int]:
    """The users whose usernames have these skeletons, by skeleton; one query."""
    return dict(
        RegisteredName.objects.filter(skeleton__in=set(skeletons)).values_list(
            "skeleton", "user_id"
        )
    )


def registered_name_save(*, user: AbstractBaseUser) -> None:
    """Keep the user's RegisteredName in step with their username (after a save)."""
    skeleton = nicknames.skeleton(user.get_username())
    current = RegisteredName.objects.filter(user_id=user.pk).first()
    if current is not None and current.skeleton == skeleton:
        return
    if len(skeleton) > SKELETON_MAX_LENGTH:
        # Longer than any nickname's skeleton: no nickname can pose as it.
        if current is not None:
            current.delete()
        return
    try:
        with transaction.atomic():
            if current is None:
                RegisteredName.objects.create(user_id=user.pk, skeleton=skeleton)
            else:
                current.skeleton = skeleton
                current.save(update_fields=["skeleton"])
    except IntegrityError:
        # A user with a look-alike username was registered first and keeps the
        # name; the old one of this user is free all the same.
        if current is not None:
            current.delete()
