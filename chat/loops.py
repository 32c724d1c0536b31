"""Objects kept per event loop: tests run several loops in turn in one process."""

import asyncio
import weakref


def loop_local(factory):
    """A function that returns the running loop's object, made by factory once."""
    objects = weakref.WeakKeyDictionary()

    def get():
        loop = asyncio.get_running_loop()
        found = objects.get(loop)
        if found is None:
            found = objects[loop] = factory()
        return found

    get.objects = objects
    return get
