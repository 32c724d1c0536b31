"""
A room archived or deleted (in the admin or anywhere else) closes its sockets;
a user saved keeps their username's RegisteredName in step (a deleted user's
goes with them, on_delete=CASCADE).
"""

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from . import services
from .models import Room


@receiver(pre_save, sender=Room)
def room_remember_archived(sender, instance, **kwargs):
    instance._was_archived = (
        instance.pk is not None
        and Room.objects.filter(pk=instance.pk, archived=True).exists()
    )


@receiver(post_save, sender=Room)
def room_archived(sender, instance, created, **kwargs):
    if instance.archived and not getattr(instance, "_was_archived", False):
        services.room_closed(room_id=instance.pk)


@receiver(post_delete, sender=Room)
def room_deleted(sender, instance, **kwargs):
    services.room_closed(room_id=instance.pk)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def user_registered_name(
    sender: type, instance: AbstractBaseUser, **kwargs: object
) -> None:
    # Also for a user saved raw (loaddata): only the username is read.
    services.registered_name_save(user=instance)
