"""Helpers for log lines: one line per event, whatever went wrong."""


def cause(exc: BaseException) -> str:
    """
    An exception as one log line: its class and message. Not repr(): redis-py's
    exceptions leave their message out of it, and psycopg's messages span lines.
    """
    return f"{type(exc).__name__}({' '.join(str(exc).split())!r})"
