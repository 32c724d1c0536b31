"""Objects kept per event loop: tests run several loops in turn in one process."""

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """A callable that returns the running loop's object, made by factory once."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self.factory = factory
        self.objects: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def __call__(self) -> T:
        loop = asyncio.get_running_loop()
        found = self.objects.get(loop)
        if found is None:
            found = self.objects[loop] = self.factory()
        return found


def loop_local(factory: Callable[[], T]) -> LoopLocal[T]:
    """A function that returns the running loop's object, made by factory once."""
    return LoopLocal(factory)
