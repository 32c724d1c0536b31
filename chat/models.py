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
    slow_mode_seconds = models.PositiveIntegerField(
        _("slow mode (seconds)"),
        default=0,
        help_text=_(
            "At most one message per this many seconds from each participant "
            "(moderators excepted); 0 is off."
        ),
    )
    members_only = models.BooleanField(
        _("members only"),
        default=False,
        help_text=_("Only signed-in users (and moderators) may post."),
    )
    moderators = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="moderated_rooms",
        verbose_name=_("moderators"),
        help_text=_(
            "Staff users who moderate this room. Staff with the “Can moderate "
            "every room” permission moderate all rooms."
        ),
    )

    class Meta:
        ordering = ["name"]
        permissions = [("moderate_room", _("Can moderate every room"))]

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
    # The signed-in sender; None for a visitor without an account.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    edited = models.DateTimeField(_("edited"), null=True, blank=True, editable=False)
    # A deleted message keeps its place (and seq) with its text gone.
    deleted = models.DateTimeField(_("deleted"), null=True, blank=True, editable=False)

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
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
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
    # The client's address as chat/addresses.py finds it: what an address ban
    # takes (chat/services/moderation.py).
    address = models.CharField(max_length=45, blank=True, default="")

    def __str__(self) -> str:
        return self.id


class Sanction(models.Model):
    """A mute or a ban: what a moderator forbade whom, where and until when."""

    class Kind(models.TextChoices):
        MUTE = "mute", _("mute")
        BAN = "ban", _("ban")
        # Out of the room once: it holds for the connections that were in it
        # then (those an instance that missed the layer event still serves),
        # not for a later join.
        KICK = "kick", _("kick")

    kind = models.CharField(_("kind"), max_length=8, choices=Kind.choices)
    # None: every room.
    room = models.ForeignKey(
        Room,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="sanctions",
        verbose_name=_("room"),
        help_text=_("Empty: every room."),
    )
    # The nickname they had: for people; what holds is visitor, user, address.
    nickname = models.CharField(_("nickname"), max_length=32)
    visitor = models.CharField(max_length=64, blank=True, default="", db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("account"),
    )
    address = models.CharField(
        _("address"), max_length=45, blank=True, default="", db_index=True
    )
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    created = models.DateTimeField(_("since"), default=timezone.now)
    # None: for good.
    expires = models.DateTimeField(_("until"), null=True, blank=True)
    lifted = models.DateTimeField(_("lifted"), null=True, blank=True)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("moderator"),
    )

    class Meta:
        ordering = ["-created"]
        verbose_name = _("mute or ban")
        verbose_name_plural = _("mutes and bans")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.nickname}"


class ModerationRecord(models.Model):
    """One moderator's action, kept for the record (the admin's audit log)."""

    class Action(models.TextChoices):
        DELETE = "delete", _("delete message")
        MUTE = "mute", _("mute")
        KICK = "kick", _("kick")
        BAN = "ban", _("ban")
        LIFT = "lift", _("lift mute or ban")

    created = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("moderator"),
    )
    # Kept as it was, should the account go.
    moderator_name = models.CharField(_("moderator"), max_length=150)
    action = models.CharField(_("action"), max_length=8, choices=Action.choices)
    room = models.ForeignKey(
        Room,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("room"),
    )
    nickname = models.CharField(_("whom"), max_length=32, blank=True)
    visitor = models.CharField(max_length=64, blank=True, default="")
    message_id = models.BigIntegerField(_("message"), null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=500, blank=True)
    expires = models.DateTimeField(_("until"), null=True, blank=True)
    detail = models.CharField(_("detail"), max_length=200, blank=True)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("moderation record")
        verbose_name_plural = _("moderation log")

    def __str__(self) -> str:
        return f"{self.moderator_name} {self.action} {self.nickname}"
