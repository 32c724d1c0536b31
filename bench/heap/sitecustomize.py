"""
Heap snapshots of a bench's server process, for bench/soak.py --heap: on its
directory's PYTHONPATH, with PYTHONTRACEMALLOC set, every server process
writes a tracemalloc snapshot to CHAT_BENCH_HEAP_DIR when it gets SIGUSR2.
Python imports this module by its name at start; nothing of the project does.
"""

import os
import signal
import tracemalloc

_DIRECTORY = os.environ.get("CHAT_BENCH_HEAP_DIR")


def _dump(_signum, _frame):
    taken = len(os.listdir(_DIRECTORY))
    path = os.path.join(_DIRECTORY, f"{os.getpid()}-{taken:04d}.snapshot")
    tracemalloc.take_snapshot().dump(path)


if _DIRECTORY and tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR2, _dump)
