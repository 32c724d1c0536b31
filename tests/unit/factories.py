"""Builders for the database state that service and selector tests start from."""

import itertools
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, Permission
from django.contrib.sessions.backends.db import SessionStore
from django.utils import timezone

from chat.models import Instance
from chat.services import messages, presence

_connection_ids = itertools.count(1)


def instance(name="here", *, alive=True):
    """A server process whose heartbeat is fresh, or long stopped."""
    age = timedelta(0) if alive else timedelta(minutes=10)
    Instance.objects.update_or_create(
        name=name, defaults={"heartbeat": timezone.now() - age}
    )
    return name


def join(room, nickname, *, visitor=None, on="here"):
    """Open one connection of `nickname` in `room` on instance `on`; (id, presence)."""
    connection_id = f"conn-{next(_connection_ids)}"
    joined = presence.room_join(
        room_id=room.pk,
        nickname=nickname,
        visitor=visitor or f"visitor-of-{nickname}",
        user=AnonymousUser(),
        connection_id=connection_id,
        instance=on,
    )
    return connection_id, joined


def say(room, text, *, nickname="alice", visitor="v", client_id=""):
    [result] = messages.messages_save(
        room_id=room.pk,
        drafts=[
            {
                "nickname": nickname,
                "visitor": visitor,
                "text": text,
                "client_id": client_id,
            }
        ],
    )
    if isinstance(result, Exception):
        raise result
    message, _created = result
    return message


def signed_in(username, *, staff=False, every_room=False, rooms=()):
    """A user signed in, the key of their session: staff, moderating every room
    (the permission) or the given rooms, when asked."""
    user = get_user_model().objects.create_user(username=username, is_staff=staff)
    if every_room:
        user.user_permissions.add(Permission.objects.get(codename="moderate_room"))
    for room in rooms:
        room.moderators.add(user)
    return session_of(username)


def session_of(username):
    """A new session of a user, signed in (another device of theirs)."""
    user = get_user_model().objects.get(username=username)
    store = SessionStore()
    store["_auth_user_id"] = str(user.pk)
    store["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    store["_auth_user_hash"] = user.get_session_auth_hash()
    store.create()
    return store.session_key
