from django.urls import path, re_path

from . import consumers, http_streams
from .auth import auth_stack

# The same <slug:slug> converter as the page's route (chat/urls.py): a room name
# that one accepts, the other accepts too.
websocket_urlpatterns = [
    path("ws/rooms/<slug:slug>/", consumers.RoomConsumer.as_asgi()),
    # Any other path, under /ws/ or not, is answered by the same consumer with
    # room_not_found: URLRouter's "No route found" would be a 500 and a
    # traceback in the log for every such handshake.
    re_path(r"", consumers.RoomConsumer.as_asgi()),
]

# The HTTP transport's streams and polls (chat/http_streams.py), ahead of
# Django in chatproject/asgi.py; its POSTs are Django views (chat/urls.py).
# With the session and the user, as a socket has them.
http_urlpatterns = [
    path(
        "http/rooms/<slug:slug>/events",
        auth_stack(http_streams.EventsEndpoint()),
    ),
    path("http/rooms/<slug:slug>/poll", auth_stack(http_streams.PollEndpoint())),
]
