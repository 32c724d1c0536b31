"""A TCP relay that can stop passing bytes: a network partition on loopback."""

import asyncio
from typing import Self


class PausableProxy:
    """
    A TCP relay on loopback to `port`, run in the test's event loop, that can
    stop passing bytes while keeping its connections open: a network
    partition as a server sees one (queries hang; nothing is refused).
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.port: int | None = None
        self.server: asyncio.Server | None = None
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Self:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.flowing.set()
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def pause(self) -> None:
        self.flowing.clear()

    def cut(self) -> None:
        """Pause, and break the connections open now: their next query fails
        at once, and new ones hang until their connect timeout."""
        self.pause()
        for writer in list(self.writers):
            writer.transport.abort()

    def resume(self) -> None:
        self.flowing.set()

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        try:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.close()
            self.writers.discard(sink)
