from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Room(models.Model):
    name = models.CharField(_("name"), max_length=80)
    slug = models.SlugField(
        _("slug"),
        max_length=50,
        unique=True,
        allow_unicode=False,
        help_text=_("Letters, digits, hyphens and underscores: the room's address."),
    )
    topic = models.CharField(_("topic"), max_length=200, blank=True)
    archived = models.BooleanField(
        _("archived"),
        default=False,
        help_text=_("An archived room keeps its history and accepts no messages."),
    )
    created = models.DateTimeField(_("created"), default=timezone.now)
    # The seq of the room's newest message; each message takes the next one.
    last_seq = models.PositiveBigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("chat:room", kwargs={"slug": self.slug})


class Message(models.Model):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    seq = models.PositiveBigIntegerField(editable=False)
    nickname = models.CharField(_("nickname"), max_length=32)
    text = models.TextField(_("text"))
    created = models.DateTimeField(_("time"), default=timezone.now, db_index=True)
    # Chosen by the client so that a message resent after a reconnect is saved once.
    client_id = models.CharField(max_length=64, blank=True, default="")
    # A hash of the sender's session, never the session key itself.
    visitor = models.CharField(max_length=64, blank=True, default="", editable=False)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["room", "seq"], name="message_room_seq"),
            models.UniqueConstraint(
                fields=["room", "visitor", "client_id"],
                condition=~models.Q(client_id=""),
                name="message_room_visitor_client_id",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.nickname}: {self.text[:50]}"


class Instance(models.Model):
    """A running server process; its heartbeat tells the others it is alive."""

    name = models.CharField(max_length=100, primary_key=True)
    heartbeat = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.name


# Long enough for the skeleton (chat/nicknames.py) of any 32-character nickname:
# a code point's skeleton has at most 7 (a Hangul syllable: three jamo, some of
# which map to two), so 224; tests/unit/test_nicknames.py checks every code point.
SKELETON_MAX_LENGTH = 256


class Member(models.Model):
    """A nickname held in a room by one visitor while they have a live connection."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="members")
    nickname = models.CharField(max_length=32)
    # nicknames.skeleton(nickname): look-alike nicknames share it, so the room
    # holds one of them. Compared as stored, never folded by the database
    # (SQLite's lower() folds ASCII only).
    skeleton = models.CharField(max_length=SKELETON_MAX_LENGTH)
    visitor = models.CharField(max_length=64)
    joined = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "skeleton"], name="member_room_skeleton"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.nickname} in {self.room_id}"


class RegisteredName(models.Model):
    """
    The skeleton of a registered user's username: nicknames with it are that
    user's alone. Kept in step with the users by chat/signals.py, so that a join
    asks one indexed question instead of comparing every username.
    """

    # Unique: of users whose usernames look alike, the first registered holds it.
    skeleton = models.CharField(max_length=SKELETON_MAX_LENGTH, unique=True)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )

    def __str__(self) -> str:
        return self.skeleton


class Connection(models.Model):
    """One open WebSocket of a member, served by one instance."""

    id = models.CharField(max_length=64, primary_key=True)
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="connections"
    )
    instance = models.ForeignKey(
        Instance, on_delete=models.CASCADE, related_name="connections"
    )
    opened = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.id
