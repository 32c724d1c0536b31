from django.urls import path

from . import http_views, views

app_name = "chat"

urlpatterns = [
    path("", views.lobby, name="lobby"),
    path("rooms/<slug:slug>/", views.room, name="room"),
    path("rooms/<slug:slug>/messages", views.history, name="history"),
    # The HTTP transport's POSTs; its streams are in chat/routing.py.
    # (django-stubs types path() for synchronous views only.)
    path("http/rooms/<slug:slug>/join", http_views.http_join, name="http_join"),  # type: ignore[arg-type]
    path("http/rooms/<slug:slug>/send", http_views.http_send, name="http_send"),  # type: ignore[arg-type]
]
