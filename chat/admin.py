"""
The moderators' admin. What changes a room or its messages goes through the
moderation actions (chat/services/moderation.py), which tell connected sockets.
"""

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from .models import Message, Room
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
    list_filter = ["archived"]
    search_fields = ["name", "slug", "topic"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["last_seq"]

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
    list_display = ["created", "room", "seq", "nickname", "short_text"]
    list_filter = ["room", "created"]
    list_select_related = ["room"]
    search_fields = ["nickname", "text"]
    date_hierarchy = "created"
    readonly_fields = ["room", "seq", "nickname", "created", "text", "client_id"]
    fields = ["room", "seq", "nickname", "created", "text", "client_id"]
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
