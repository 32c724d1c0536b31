"""
An HTTP load balancer on loopback, as an old one in front of the chat may be:
it spreads requests round-robin over the instances (no affinity), strips the
Upgrade that a WebSocket handshake needs, and, when told, holds every response
back until it is complete (a buffering proxy, under which an event stream
never arrives).

Each request gets a connection of its own on both sides (``Connection:
close``), so that round-robin is per request, not per connection. A request
whose instance does not answer the connect goes to the next one, as a
balancer's health checks would have it.
"""

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024
# Hop-by-hop headers this balancer does not pass on.
DROPPED = {b"connection", b"upgrade", b"keep-alive"}


@dataclass
class Served:
    """One request as the balancer passed it on."""

    method: str
    path: str
    backend: int
    status: int | None = None


def _head(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    first, *lines = raw.split(b"\r\n")
    headers = []
    for line in lines:
        name, _colon, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return first, headers


def _rewrite(first: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    kept = [(n, v) for n, v in headers if n.lower() not in DROPPED]
    lines = [first, *(n + b": " + v for n, v in kept), b"Connection: close"]
    return b"\r\n".join(lines) + HEAD_END


class Balancer:
    """Run in a thread of its own (the browser tests' Playwright calls block
    the test's thread); ``with Balancer(ports) as balancer:``."""

    def __init__(self, ports: Sequence[int], *, buffering: bool = False) -> None:
        self.ports = list(ports)
        self.buffering = buffering
        self.port: int | None = None
        self.served: list[Served] = []
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def __enter__(self) -> Self:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        future = asyncio.run_coroutine_threadsafe(self._stop(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, method: str, path_part: str) -> list[Served]:
        return [
            s for s in list(self.served) if s.method == method and path_part in s.path
        ]

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _backend(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
        for _attempt in range(len(self.ports)):
            index = self._next % len(self.ports)
            self._next += 1
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.ports[index]
                )
            except OSError:
                continue
            return index, up_reader, up_writer
        raise OSError("no instance answers")

    async def _relay(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        raw = await reader.readuntil(HEAD_END)
        if len(raw) > MAX_HEAD_BYTES:
            return
        first, headers = _head(raw[: -len(HEAD_END)])
        method, path, _version = first.decode("latin-1").split(" ", 2)
        length = next((int(v) for n, v in headers if n.lower() == b"content-length"), 0)
        body = await reader.readexactly(length) if length else b""
        try:
            index, up_reader, up_writer = await self._backend()
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n")
            writer.write(b"Connection: close\r\n\r\n")
            await writer.drain()
            return
        served = Served(method, path, index)
        self.served.append(served)
        try:
            up_writer.write(_rewrite(first, headers) + body)
            await up_writer.drain()
            answer = await up_reader.readuntil(HEAD_END)
            status_line, answer_headers = _head(answer[: -len(HEAD_END)])
            served.status = int(status_line.split(b" ", 2)[1])
            head = _rewrite(status_line, answer_headers)
            if self.buffering:
                # Nothing goes on until the instance has said everything.
                writer.write(head + await up_reader.read())
                await writer.drain()
                return
            writer.write(head)
            await writer.drain()
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            up_writer.close()
