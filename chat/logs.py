"""Helpers for log lines: one line per event, whatever went wrong."""

from django.db import DatabaseError


def cause(exc: BaseException) -> str:
    """
    An exception as one log line: its class and message. Not repr(): redis-py's
    exceptions leave their message out of it, and psycopg's messages span lines.
    """
    return f"{type(exc).__name__}({' '.join(str(exc).split())!r})"


def is_outage(exc: BaseException) -> bool:
    """
    Whether the exception is a failure of what the server depends on (the
    database, Redis, the network): logged as one line with its cause. Anything
    else is a bug, and its traceback is logged too.
    """
    return isinstance(exc, DatabaseError | OSError | TimeoutError)
