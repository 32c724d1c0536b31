"""
A lean client of the HTTP transport for the load generator: the room page for
its cookies, the join by POST, then the event stream read as it comes, with the
same accounting as the WebSocket client (bench/client.py): message events
counted by seq, each one's latency from the send time in its text.
"""

import asyncio
import collections
import json
import re
import time
from urllib.parse import quote, urlsplit

from .client import ERROR, MESSAGE

COOKIE = re.compile(r"^Set-Cookie: (visitor|csrftoken)=([^;]+)", re.I | re.M)
WELCOME = b'data: {"type":"welcome"'


async def request(host, port, method, path, headers=(), body=b""):
    """One request on a connection of its own: (status, head, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(lines).encode() + body)
        answer = await reader.read()
    finally:
        writer.close()
    head, _sep, rest = answer.partition(b"\r\n\r\n")
    text = head.decode("latin-1")
    if "transfer-encoding: chunked" in text.lower():
        rest = _unchunk(rest)
    return int(text.split(" ", 2)[1]), text, rest


def _unchunk(data):
    out = bytearray()
    while data:
        size, _sep, data = data.partition(b"\r\n")
        length = int(size.split(b";")[0] or b"0", 16)
        if not length:
            break
        out += data[:length]
        data = data[length + 2 :]
    return bytes(out)


class HttpClient(asyncio.Protocol):
    """One participant: its POSTs and its event stream."""

    def __init__(self, latencies):
        self.latencies = latencies
        self.seen = {}
        self.errors = collections.Counter()
        self.buffer = bytearray()
        self.transport = None
        loop = asyncio.get_running_loop()
        self.welcomed = loop.create_future()
        self.posting = asyncio.Lock()
        self.sending = set()

    @classmethod
    async def join(cls, base, slug, nickname, latencies):
        parts = urlsplit(base)
        host, port = parts.hostname, parts.port
        status, head, _body = await request(host, port, "GET", f"/rooms/{slug}/")
        if status != 200:
            raise ConnectionError(f"the room page answered {status}")
        cookies = dict(COOKIE.findall(head))
        cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        headers = [
            ("Cookie", cookie_header),
            ("X-CSRFToken", cookies["csrftoken"]),
            ("Content-Type", "application/json"),
        ]
        frame = {"type": "join", "nickname": nickname, "last_seq": 0}
        status, _head, body = await request(
            host,
            port,
            "POST",
            f"/http/rooms/{slug}/join",
            headers,
            json.dumps(frame).encode(),
        )
        if status != 200:
            raise ConnectionError(f"join answered {status}: {body[:200]!r}")
        ticket = json.loads(body)["ticket"]
        loop = asyncio.get_running_loop()
        _transport, client = await loop.create_connection(
            lambda: cls(latencies), host, port
        )
        client.host, client.port, client.headers = host, port, headers
        client.send_path = f"/http/rooms/{slug}/send?ticket={quote(ticket)}"
        client.transport.write(
            (
                f"GET /http/rooms/{slug}/events?ticket={quote(ticket)}&last_seq=0 "
                f"HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: {cookie_header}\r\n"
                "Accept: text/event-stream\r\n\r\n"
            ).encode()
        )
        await client.welcomed
        return client

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.welcomed.done():
            self.welcomed.set_exception(ConnectionError("closed before welcome"))

    def send_text(self, text):
        """A frame by POST, one at a time in order (as the page sends them)."""
        task = asyncio.ensure_future(self._post(text.encode()))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _post(self, body):
        async with self.posting:
            status, _head, answer = await request(
                self.host, self.port, "POST", self.send_path, self.headers, body
            )
        if status >= 300 and (error := ERROR.search(answer)):
            self.errors[error.group(1).decode()] += 1

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        end = buffer.rfind(b"\n\n")
        if end < 0:
            return
        now = time.time_ns()
        seen = self.seen
        for match in MESSAGE.finditer(buffer, 0, end):
            seq = int(match.group(1))
            seen[seq] = seen.get(seq, 0) + 1
            self.latencies.append((now - int(match.group(2))) / 1e6)
        if not self.welcomed.done() and buffer.find(WELCOME, 0, end) >= 0:
            self.welcomed.set_result(True)
        del buffer[: end + 2]
