from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from . import services
from .models import Message, Room


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

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(message_count=Count("messages"))

    @admin.display(description=_("messages"), ordering="message_count")
    def message_count(self, room):
        return room.message_count

    @admin.display(description=_("room"))
    def link(self, room):
        return format_html('<a href="{}">{}</a>', room.get_absolute_url(), _("open"))


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

    def delete_model(self, request, obj):
        services.messages_delete(messages=Message.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        services.messages_delete(messages=queryset)

    def has_add_permission(self, request):
        # Messages come from the chat, where they take their seq.
        return False

    @admin.display(description=_("text"))
    def short_text(self, message):
        return message.text if len(message.text) <= 80 else message.text[:79] + "…"
