"""
A user saved keeps their username's RegisteredName in step (a deleted user's
goes with them, on_delete=CASCADE).

A signal, and not a call from the code that saves users: that code is
Django's (the auth admin, createsuperuser, loaddata), and this project's own
code saves no user. Rooms and messages have no signals: the moderator's
actions (chat/services/moderation.py) say what happens to connected sockets.
"""

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models.signals import post_save
from django.dispatch import receiver

from .services import names


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_registered_name(
    sender: type, instance: AbstractBaseUser, **kwargs: object
) -> None:
    # Also for a user saved raw (loaddata): only the username is read.
    names.registered_name_save(user=instance)
