"""
Frames dropped on the delivery path: each drop is counted (chat/counters.py,
as "<event>.<kind>") and logged. Under overload drops come by the thousand a
second, so each counter logs its first drop at once and then at most one line
per LOG_INTERVAL_SECONDS, with how many were dropped since the line before; a
drop that finds its line taken is logged when the interval ends.

The line: `<event> type=<kind> dropped=<since the last line> total=<since start>`
and the fields of the latest drop (room, cause).
"""

import asyncio
import logging
import math
import threading
import time

from . import counters, protocol

logger = logging.getLogger(__name__)

LOG_INTERVAL_SECONDS = 5.0


class _Line:
    """What one counter has not logged yet."""

    __slots__ = ("event", "fields", "kind", "later", "logged_at", "unlogged")

    def __init__(self, event: str, kind: str):
        self.event = event
        self.kind = kind
        self.logged_at = -math.inf
        self.unlogged = 0
        self.fields: dict[str, object] = {}
        self.later = False


_lines: dict[str, _Line] = {}
# Drops come from the event loop and from threads (the admin's sync code).
_lock = threading.Lock()


def counter_name(event: str, kind: str) -> str:
    return f"{event}.{kind}"


def kind_of(frames: list[dict] | tuple[dict, ...]) -> str:
    """What a lot of frames is counted as: its first frame's type, typing for
    typing and stop_typing alike (coalesced lots mix them)."""
    if not frames:
        return "event"
    kind = frames[0].get("type") if isinstance(frames[0], dict) else None
    if kind in (protocol.TYPING, protocol.STOP_TYPING):
        return protocol.TYPING
    return str(kind or "event")


def dropped(event: str, kind: str, count: int = 1, **fields: object) -> None:
    """
    Count and log `count` frames of `kind` (a frame type, or "event" for a whole
    layer event) dropped for the reason `event` (the log line's name, e.g.
    hub_overloaded).
    """
    if count <= 0:
        return
    name = counter_name(event, kind)
    counters.add(name, count)
    now = time.monotonic()
    with _lock:
        line = _lines.get(name)
        if line is None:
            line = _lines[name] = _Line(event, kind)
        line.unlogged += count
        line.fields = fields
        due = now - line.logged_at >= LOG_INTERVAL_SECONDS
        if not due and not line.later:
            line.later = _log_later(name, line.logged_at + LOG_INTERVAL_SECONDS - now)
    if due:
        _log(name)


def _log_later(name: str, delay: float) -> bool:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Outside an event loop: the next drop of the kind logs it.
        return False
    loop.call_later(max(delay, 0.0), _log_due, name)
    return True


def _log_due(name: str) -> None:
    """The end of an interval: log what waited, unless a drop logged it since
    (then wait for the end of that line's interval)."""
    with _lock:
        line = _lines.get(name)
        if line is None:
            return
        line.later = False
        remaining = line.logged_at + LOG_INTERVAL_SECONDS - time.monotonic()
        if line.unlogged and remaining > 0:
            line.later = _log_later(name, remaining)
            return
    _log(name)


def _log(name: str) -> None:
    with _lock:
        line = _lines.get(name)
        if line is None or not line.unlogged:
            return
        count, line.unlogged = line.unlogged, 0
        line.logged_at = time.monotonic()
        event, kind, fields = line.event, line.kind, line.fields
    extra = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.warning(
        "%s type=%s dropped=%d total=%d %s",
        event,
        kind,
        count,
        counters.get(name),
        extra,
    )


def forget() -> None:
    """Forget when each kind was last logged (tests that count lines)."""
    with _lock:
        _lines.clear()
