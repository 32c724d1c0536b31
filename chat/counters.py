"""
Process-wide counters: named totals since the process started, such as the
frames dropped on the delivery path (chat/drops.py). Only counting lives here;
reading them out (logs, metrics) is up to the callers.
"""

import threading
from collections import Counter

_counts: Counter[str] = Counter()
# Counted from the event loop and from threads (the admin's sync code): an
# increment is a read and a write.
_lock = threading.Lock()


def add(name: str, amount: int = 1) -> int:
    """Add `amount` to the counter `name`; its new total."""
    with _lock:
        _counts[name] += amount
        return _counts[name]


def get(name: str) -> int:
    """The total of one counter (0 if it was never counted)."""
    with _lock:
        return _counts[name]


def snapshot() -> dict[str, int]:
    """Every counter's total, as a plain dict copied at one moment."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget every count (tests that need to start from zero)."""
    with _lock:
        _counts.clear()


def add_on_loop(name: str, amount: int = 1) -> None:
    """
    add() for a counter only ever counted from the event loop's thread, on a
    path where the lock would cost as much as the work counted (a socket write):
    no lock taken, no total returned.
    """
    _counts[name] += amount
