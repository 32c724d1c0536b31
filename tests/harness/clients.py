"""
WebSocket clients of the servers on loopback.

`ChatClient` behaves like the browser's page (static/chat/): a seq
cursor, gap filling over HTTP, resending unconfirmed messages after a
reconnect. `RawWebSocket` sends what it is told to, frame by frame or as raw
bytes, over a plain blocking socket, and reads only when told to: for clients
that misbehave on purpose (never reading, never finishing a message). Its
handshake and the parsing of the server's frames are websockets' sans-I/O
ClientProtocol; frames are written as bytes, so that any may be sent.
"""

import asyncio
import contextlib
import itertools
import json
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Origin
from websockets.uri import parse_uri

from chat.protocol import RETRY_ERRORS

from .http import http_get

T = TypeVar("T")


class Server(Protocol):
    """What a client needs of a server launcher (servers.Daphne)."""

    port: int

    @property
    def http(self) -> str: ...

    @property
    def origin(self) -> str: ...

    def ws_url(self, slug: str) -> str: ...


# Browser-like client -----------------------------------------------------------

FRAME_TIMEOUT = 10
RESEND_AFTER = 1.0


class ChatClient:
    """
    One browser tab in one room, speaking the protocol as static/chat/
    does: messages are kept once each by seq, a gap (a missed event, a pong
    with a newer last_seq) is filled from /rooms/<slug>/messages?after=, and on
    reconnecting it joins with its last_seq and resends what was not confirmed.

    With `servers` given it reconnects by itself when the socket drops, to the
    next server that accepts it (what a load balancer does for a browser).
    """

    def __init__(
        self,
        nickname: str,
        slug: str,
        *,
        cookie: str | None = None,
        servers: list[Server] | None = None,
        keep_messages: bool = True,
        forwarded_for: str | None = None,
    ) -> None:
        self.nickname = nickname
        # What the front end would add as X-Forwarded-For (CHAT_PROXY_HOPS=1).
        self.forwarded_for = forwarded_for
        self.slug = slug
        self.cookie = cookie
        self.servers: list[Server] = list(servers or [])
        self.server: Server | None = None
        self.ws: ClientConnection | None = None
        self.frames: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()
        self.reader: asyncio.Task[None] | None = None
        self.reconnecting: asyncio.Task[None] | None = None
        self.closing = False
        # Message frames stay in `frames` too unless a load test says otherwise.
        self.keep_messages = keep_messages
        # The browser's view: seq -> message text, and the cursor below which
        # every message is known.
        self.messages: dict[int, str] = {}
        self.cursor: int | None = None
        self.pending: dict[str, str] = {}
        self.resent: set[str] = set()
        # Refused for good (client_id -> text), and how many refusals were
        # retried.
        self.failed: dict[str, str] = {}
        self.retries = 0
        self.resending: set[asyncio.Task[None]] = set()
        self._client_ids = itertools.count(1)
        # Seqs of live frames on the current socket: a repeat is a server bug.
        self.socket_seqs: set[int] = set()
        self.repeated_frames = 0
        self.participants: int | None = None
        self.users: set[str] = set()
        self.gap_task: asyncio.Task[None] | None = None
        self.drops: list[float] = []
        self.reconnects: list[float] = []
        # Seconds from the sending of someone else's stamped message to its
        # live arrival here.
        self.latencies: list[float] = []

    # Connection ----------------------------------------------------------------

    async def connect(
        self,
        server: Server,
        timeout: float = FRAME_TIMEOUT,
        sock: socket.socket | None = None,
    ) -> dict[str, Any]:
        """Open a socket to `server` (over `sock`, a connected TCP socket, if
        given), join and take the welcome."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if self.forwarded_for:
            headers["X-Forwarded-For"] = self.forwarded_for
        self.ws = await ws_connect(
            server.ws_url(self.slug),
            origin=Origin(server.origin),
            additional_headers=headers,
            open_timeout=timeout,
            ping_interval=None,
            close_timeout=2,
            sock=sock,
        )
        self.server = server
        self.socket_seqs = set()
        mark = len(self.frames)
        self.reader = asyncio.create_task(self._read(self.ws))
        await self.send(
            {"type": "join", "nickname": self.nickname, "last_seq": self.cursor}
        )
        welcome = await self.expect("welcome", since=mark, timeout=timeout)
        for frame in welcome["history"]:
            self._message(frame, live=False)
        self._advance(welcome["last_seq"])
        if welcome.get("has_more"):
            self.schedule_gap_fill(delay=0)
        self.participants = welcome["participants"]
        self.users = set(welcome["users"])
        for client_id, text in list(self.pending.items()):
            self.resent.add(client_id)
            await self.send({"type": "message", "text": text, "client_id": client_id})
        return welcome

    async def close(self) -> None:
        self.closing = True
        for task in (self.reconnecting, self.gap_task, *self.resending):
            if task and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        if self.reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.reader, 5)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self.closing = True
        if self.ws is not None:
            self.ws.transport.abort()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") == "message":
                    self._message(frame, live=True)
                    if not self.keep_messages:
                        continue
                elif frame.get("type") == "pong":
                    if self.cursor is not None and frame["last_seq"] > self.cursor:
                        self.schedule_gap_fill(delay=0)
                elif frame.get("type") == "error" and frame.get("client_id"):
                    self._refused(frame)
                elif frame.get("type") in ("joined", "left"):
                    self.participants = frame["participants"]
                    if frame["type"] == "joined":
                        self.users.add(frame["nickname"])
                    else:
                        self.users.discard(frame["nickname"])
                async with self.changed:
                    self.frames.append(frame)
                    self.changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            async with self.changed:
                self.frames.append({"type": "_closed", "code": ws.close_code})
                self.changed.notify_all()
            if ws is self.ws and not self.closing:
                self.drops.append(time.monotonic())
                if self.servers:
                    self.reconnecting = asyncio.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
            # Try the others first: the one that dropped us may be gone.
            order = sorted(self.servers, key=lambda s: s is self.server)
            for server in order:
                try:
                    await self.connect(server, timeout=5)
                except (OSError, TimeoutError, websockets.WebSocketException):
                    continue
                self.reconnects.append(time.monotonic())
                return

    # Sending -------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> bool:
        """Send if the socket is open; False otherwise (as the browser's send)."""
        if self.ws is None:
            return False
        try:
            await self.ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            return False
        return True

    async def say(self, text: str) -> str:
        """Send a message with a client_id; it stays pending until echoed."""
        client_id = f"{self.nickname}-{next(self._client_ids)}"
        self.pending[client_id] = text
        await self.send({"type": "message", "text": text, "client_id": client_id})
        return client_id

    async def ping(self) -> bool:
        return await self.send({"type": "ping"})

    def _refused(self, frame: dict[str, Any]) -> None:
        """As the page does: a message the server could not take just now goes
        again later with the same client_id; one refused for good is dropped."""
        client_id = frame["client_id"]
        if client_id not in self.pending:
            return
        if frame["code"] not in RETRY_ERRORS:
            self.failed[client_id] = self.pending.pop(client_id)
            return
        self.retries += 1
        text = self.pending[client_id]

        async def again() -> None:
            await asyncio.sleep(RESEND_AFTER)
            if client_id in self.pending:
                self.resent.add(client_id)
                await self.send(
                    {"type": "message", "text": text, "client_id": client_id}
                )

        task = asyncio.create_task(again())
        self.resending.add(task)
        task.add_done_callback(self.resending.discard)

    # Receiving -----------------------------------------------------------------

    def _message(self, frame: dict[str, Any], live: bool) -> None:
        seq = frame["seq"]
        if live:
            # A resend is answered with the saved copy even when the original
            # already came live on this socket: that one is not a repeat.
            if seq in self.socket_seqs and frame.get("client_id") not in self.resent:
                self.repeated_frames += 1
            self.socket_seqs.add(seq)
            sent_at = _sent_at(frame["text"])
            if sent_at is not None and frame["nickname"] != self.nickname:
                self.latencies.append(time.time() - sent_at)
        self.pending.pop(frame.get("client_id") or "", None)
        self.messages.setdefault(seq, frame["text"])
        if self.cursor is not None and seq > self.cursor + 1:
            self.schedule_gap_fill()
        self._advance(self.cursor or 0)

    def _advance(self, through: int) -> None:
        cursor = max(self.cursor or 0, through)
        while cursor + 1 in self.messages:
            cursor += 1
        self.cursor = cursor

    def schedule_gap_fill(self, delay: float = 0.3) -> None:
        # A message that came early usually means the one before is on its way
        # (another sender's, through the other instance); wait a little as
        # the page does, and fetch only if the gap is still open then.
        if self.gap_task is None or self.gap_task.done():
            self.gap_task = asyncio.create_task(self._fill_gap(delay))

    async def _fill_gap(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if delay and max(self.messages, default=0) <= (self.cursor or 0):
            return
        with contextlib.suppress(OSError):
            await self.fill_gap()

    async def fill_gap(self) -> None:
        """Fetch every message after the cursor from the HTTP history API."""
        server = self.server or self.servers[0]
        while True:
            url = f"{server.http}/rooms/{self.slug}/messages?after={self.cursor or 0}"
            status, _headers, body = await http_get(f"{url}&limit=200")
            if status != 200:
                raise OSError(f"history answered {status}")
            page = json.loads(body)
            for frame in page["messages"]:
                self._message(frame, live=False)
            self._advance(page["through"])
            if not page["has_more"]:
                return

    async def settle(self, last_seq: int, timeout: float = 30) -> None:
        """Ping and fill gaps until every message up to `last_seq` is known and
        nothing this client sent is unconfirmed."""
        deadline = time.monotonic() + timeout
        while self.cursor is None or self.cursor < last_seq or self.pending:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.nickname}: cursor {self.cursor} of {last_seq}, "
                    f"{len(self.pending)} unconfirmed after {timeout}s"
                )
            # Unconfirmed messages are resent on reconnecting only, as the
            # browser does.
            await self.ping()
            with contextlib.suppress(OSError):
                await self.fill_gap()
            await asyncio.sleep(0.2)

    def texts(self) -> list[str]:
        """The messages as this client shows them, in seq order."""
        return [self.messages[seq] for seq in sorted(self.messages)]

    async def wait(
        self, check: Callable[[], T], what: str, timeout: float = FRAME_TIMEOUT
    ) -> T:
        """Wait, frame by frame, until check() is true; returns its value."""
        try:
            async with asyncio.timeout(timeout), self.changed:
                return await self.changed.wait_for(check)
        except TimeoutError:
            seen = [f["type"] for f in self.frames][-20:]
            pytest.fail(
                f"{self.nickname}: no {what} within {timeout}s; last frames: {seen}"
            )

    async def expect(
        self,
        kind: str,
        *,
        since: int = 0,
        timeout: float = FRAME_TIMEOUT,
        **match: object,
    ) -> dict[str, Any]:
        """The first frame of `kind` matching `match` from index `since` on."""

        def find() -> dict[str, Any] | None:
            for frame in self.frames[since:]:
                if frame["type"] == kind and all(
                    frame.get(k) == v for k, v in match.items()
                ):
                    return frame
            return None

        frame = await self.wait(find, f"{kind} {match}", timeout)
        assert frame is not None  # wait() returns a true result only
        return frame

    async def expect_messages(self, count: int, timeout: float = FRAME_TIMEOUT) -> None:
        """Wait until `count` live message frames arrived on this client."""
        await self.wait(
            lambda: len(self.of_type("message")) >= count,
            f"{count} messages",
            timeout,
        )

    def mark(self) -> int:
        return len(self.frames)

    def of_type(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [f for f in self.frames[since:] if f["type"] == kind]


def stamped(label: str) -> str:
    """A message text that carries its send time (for latency figures)."""
    # Wall-clock time, comparable with the time the server saved it.
    return f"{label}@{time.time():.6f}"


def _sent_at(text: str) -> float | None:
    head, _sep, stamp = text.rpartition("@")
    if not head:
        return None
    try:
        return float(stamp)
    except ValueError:
        return None


# Raw client ------------------------------------------------------------------

# Only to 127.0.0.1, with a timeout on every call.
RAW_TIMEOUT = 10


def masked(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """One client frame (masked, as a client's must be)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


class RawWebSocket:
    """One socket to `server`, handshaken at once; nothing read unless asked."""

    def __init__(
        self, server: Server, slug: str, *, sock: socket.socket | None = None
    ) -> None:
        url = server.ws_url(slug)
        assert url.startswith("ws://127.0.0.1:"), url
        self.sock = sock or socket.create_connection(
            ("127.0.0.1", server.port), timeout=RAW_TIMEOUT
        )
        self.sock.settimeout(RAW_TIMEOUT)
        self.protocol = ClientProtocol(
            parse_uri(url), origin=Origin(server.origin), max_size=None
        )
        self.frames: list[Frame] = []
        self.eof = False
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.state is State.CONNECTING and not self.eof:
            self.read_some()
        # Open, or already closed again by the server after its 101 (a socket
        # turned away): the frames it sent are in self.frames.
        if self.protocol.state is State.CONNECTING or self.protocol.handshake_exc:
            raise ConnectionError(f"handshake failed: {self.protocol.handshake_exc}")

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_json(self, frame: dict) -> None:
        self.send_raw(masked(Opcode.TEXT, json.dumps(frame).encode()))

    def read_some(self) -> None:
        """One read from the socket, parsed; EOF (or a reset) ends the stream."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.eof = True
            self.protocol.receive_eof()
        self.frames += [
            event
            for event in self.protocol.events_received()
            if isinstance(event, Frame)
        ]

    def texts(self) -> list[dict]:
        return [json.loads(f.data) for f in self.frames if f.opcode is Opcode.TEXT]

    def read_until_closed(self) -> int:
        """Read to the end; the close code the server sent, or 1006 for none."""
        while not self.eof:
            self.read_some()
        close = self.protocol.close_rcvd
        return close.code if close is not None else 1006

    def close(self) -> None:
        """A clean close from the client's side, then the socket is let go."""
        try:
            if self.protocol.state is State.OPEN:
                self.protocol.send_close(1000)
                self._flush()
                self.read_until_closed()
        except OSError:
            pass
        finally:
            self.sock.close()
