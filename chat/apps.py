from django.apps import AppConfig
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished
from django.db import connections


def close_request_connections(**kwargs: object) -> None:
    """
    Under ASGI each HTTP request runs its synchronous part in a thread of its
    own, so a connection kept for reuse (CONN_MAX_AGE) is never reused: it
    lingers until the garbage collector finds it, and a busy history endpoint
    ran PostgreSQL out of connections ("too many clients"). Socket events use
    one long-lived database thread and keep theirs.
    """
    connections.close_all()


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - keeps registered names in step

        # Only the real server's requests: the test client's run in the test's
        # own thread and transaction.
        request_finished.connect(close_request_connections, sender=ASGIHandler)
