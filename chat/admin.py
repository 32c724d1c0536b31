"""
The moderators' admin. What changes a room or its messages goes through the
moderation actions (chat/services/moderation.py), which tell connected sockets.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .models import Message, ModerationRecord, Room, Sanction
from .services import moderation


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "topic",
        "archived",
        "message_count",
        "created",
        "link",
    ]
    list_filter = ["archived", "members_only"]
    search_fields = ["name", "slug", "topic"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["last_seq"]
    filter_horizontal = ["moderators"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Room]:
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(description=_("messages"), ordering="message_count")
    def message_count(self, room: Room) -> int:
        return room.message_count  # type: ignore[attr-defined] # get_queryset's

    @admin.display(description=_("room"))
    def link(self, room: Room) -> SafeString:
        return format_html('<a href="{}">{}</a>', room.get_absolute_url(), _("open"))

    def save_model(
        self, request: HttpRequest, obj: Room, form: forms.ModelForm, change: bool
    ) -> None:
        moderation.room_save(room=obj, changed=form.changed_data)

    def delete_model(self, request: HttpRequest, obj: Room) -> None:
        moderation.room_delete(room=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Room]) -> None:
        moderation.rooms_delete(rooms=queryset)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["created", "room", "seq", "nickname", "short_text", "edited"]
    list_filter = ["room", "created", "edited", "deleted"]
    list_select_related = ["room"]
    search_fields = ["nickname", "text"]
    date_hierarchy = "created"
    readonly_fields = [
        "room",
        "seq",
        "nickname",
        "user",
        "created",
        "edited",
        "deleted",
        "text",
        "client_id",
    ]
    fields = list(readonly_fields)
    ordering = ["-created"]

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        moderation.messages_delete(messages=Message.objects.filter(pk=obj.pk))

    def delete_queryset(
        self, request: HttpRequest, queryset: QuerySet[Message]
    ) -> None:
        moderation.messages_delete(messages=queryset)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Messages come from the chat, where they take their seq.
        return False

    @admin.display(description=_("text"))
    def short_text(self, message: Message) -> str:
        return message.text if len(message.text) <= 80 else message.text[:79] + "…"


@admin.register(Sanction)
class SanctionAdmin(admin.ModelAdmin):
    """Mutes and bans: given in the room (docs/moderation.md), lifted here."""

    list_display = [
        "created",
        "kind",
        "nickname",
        "room_or_all",
        "expires",
        "in_force",
        "moderator",
        "reason",
    ]
    list_filter = ["kind", "room", ("lifted", admin.EmptyFieldListFilter)]
    list_select_related = ["room", "moderator"]
    search_fields = ["nickname", "reason", "address", "user__username"]
    date_hierarchy = "created"
    actions = ["lift"]
    readonly_fields = [
        "kind",
        "room",
        "nickname",
        "user",
        "address",
        "reason",
        "created",
        "expires",
        "lifted",
        "moderator",
    ]
    fields = list(readonly_fields)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Sanction]:
        # A kick holds only for the connections it closed: it is in the log.
        return super().get_queryset(request).exclude(kind=Sanction.Kind.KICK)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Given from the room, where the participant is named.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Lifted, not deleted: what was done stays on the record.
        return False

    @admin.display(description=_("room"), ordering="room")
    def room_or_all(self, sanction: Sanction) -> str:
        return str(sanction.room) if sanction.room else str(_("every room"))

    @admin.display(description=_("in force"), boolean=True)
    def in_force(self, sanction: Sanction) -> bool:
        return sanction.lifted is None and (
            sanction.expires is None or sanction.expires > timezone.now()
        )

    @admin.action(description=_("Lift the selected mutes and bans"))
    def lift(self, request: HttpRequest, queryset: QuerySet[Sanction]) -> None:
        lifted = moderation.sanctions_lift(
            sanctions_to_lift=queryset,
            moderator=request.user,  # type: ignore[arg-type] # the admin's: signed in
        )
        self.message_user(
            request,
            ngettext("%(n)d lifted.", "%(n)d lifted.", lifted) % {"n": lifted},
            messages.SUCCESS,
        )


@admin.register(ModerationRecord)
class ModerationRecordAdmin(admin.ModelAdmin):
    """Who did what to whom, when and why: read only."""

    list_display = [
        "created",
        "moderator_name",
        "action",
        "room",
        "nickname",
        "reason",
        "expires",
        "detail",
    ]
    list_filter = ["action", "room", "created"]
    search_fields = ["moderator_name", "nickname", "reason", "detail"]
    date_hierarchy = "created"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
