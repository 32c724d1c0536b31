from django.urls import path, re_path

from . import consumers

# The same <slug:slug> converter as the page's route (chat/urls.py): a room name
# that one accepts, the other accepts too.
websocket_urlpatterns = [
    path("ws/rooms/<slug:slug>/", consumers.RoomConsumer.as_asgi()),
    # Any other path is answered by the same consumer with room_not_found,
    # rather than a dropped handshake.
    re_path(r"^ws/", consumers.RoomConsumer.as_asgi()),
]
