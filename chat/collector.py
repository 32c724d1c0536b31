"""
Python's garbage collector set for a long-running server process.

What Django and the app built while starting is frozen out of later collections,
and young collections run less often, so fewer objects of requests still under
way are promoted to the older generations whose collections walk everything.
Measured in docs/benchmarks.md (the HTTP transport, 1000 participants).
"""

import gc

from django.conf import settings


def collector_tune() -> None:
    """Freeze what exists now and set the young generation's threshold; call
    once, when the application is built."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(settings.CHAT_GC_YOUNG_THRESHOLD, middle, old)
