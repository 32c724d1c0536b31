"""
ASGI entry point: Django for HTTP (but the HTTP transport's streams), the chat
consumer for WebSockets.

Daphne serves it: ``daphne chatproject.asgi:application``.
"""

import os

import django
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatproject.settings")
# Django is set up before anything imports models (get_asgi_application(), in
# two steps, so that the telemetry comes between them).
django.setup(set_prefix=False)

from chat.telemetry import configure_at_start as start_telemetry  # noqa: E402

start_telemetry()
django_asgi_app = ASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from chat.auth import auth_stack  # noqa: E402
from chat.collector import collector_tune  # noqa: E402
from chat.origins import SiteOriginValidator  # noqa: E402
from chat.redis_topology import check_at_start  # noqa: E402
from chat.routing import http_urlpatterns, websocket_urlpatterns  # noqa: E402
from chat.transport import SocketMiddleware, StreamMiddleware  # noqa: E402

# A Redis the channel layer cannot run on stops the server here, with a message.
check_at_start()

application = ProtocolTypeRouter(
    {
        # The HTTP transport's streams and polls; every other request is Django's.
        "http": StreamMiddleware(
            URLRouter(
                [*http_urlpatterns, re_path(r"", django_asgi_app)]  # type: ignore[arg-type]
            )
        ),
        # Outermost, so that it sees the server's own send callable.
        "websocket": SocketMiddleware(
            # Host, scheme and port of the Origin, not only its host name
            # (chat/origins.py).
            SiteOriginValidator(auth_stack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# Everything above stays for the life of the process (chat/collector.py).
collector_tune()
