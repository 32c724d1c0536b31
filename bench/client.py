"""
A lean WebSocket client for the load generator.

Why not the websockets library's client: at 100,000+ frames a second its
per-frame work (a generator-based parser, a task per connection, a queue per
message) costs the load generator more CPU than the servers it measures, on the
same two cores. This client reads frames with a plain loop over the bytes, finds
each message's seq and send time with one regular expression per read, and
leaves framing of what it sends (masked, as a client must) to the websockets
library.
"""

import asyncio
import base64
import collections
import os
import re
import time
from urllib.parse import urlsplit

from websockets.frames import Frame, Opcode

MESSAGE = re.compile(rb'\{"type":"message","id":\d+,"seq":(\d+),[^}]*?"text":"t(\d+)')
WELCOME = b'{"type":"welcome"'
ERROR = re.compile(rb'\{"type":"error","code":"(\w+)"')


def use_fast_loop():
    """uvloop (installed with uvicorn[standard]) hands each socket's bytes to
    the client about twice as fast: less of the load generator's own delay in
    what it measures."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def client_frame(opcode, payload):
    return Frame(opcode, payload).serialize(mask=True)


class Client(asyncio.Protocol):
    """One socket: counts message frames by seq and records their latency."""

    def __init__(self, latencies):
        self.latencies = latencies
        self.seen = {}
        # Error frames by code (a refused message: rate_limited, unavailable).
        self.errors = collections.Counter()
        self.buffer = bytearray()
        self.upgraded = False
        self.transport = None
        loop = asyncio.get_running_loop()
        self.open = loop.create_future()
        self.welcomed = loop.create_future()
        self.closed = loop.create_future()

    @classmethod
    async def connect(cls, url, origin, latencies, headers=()):
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _transport, client = await loop.create_connection(
            lambda: cls(latencies), parts.hostname, parts.port
        )
        key = base64.b64encode(os.urandom(16)).decode()
        client.transport.write(
            (
                f"GET {parts.path} HTTP/1.1\r\n"
                f"Host: {parts.hostname}:{parts.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {origin}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers)
                + "\r\n"
            ).encode()
        )
        # Servers drop what comes before their handshake answer.
        try:
            await client.open
        except ConnectionError:
            # Nobody waits for the welcome of a socket that never opened.
            client.welcomed.exception()
            raise
        return client

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if not self.closed.done():
            self.closed.set_result(exc)
        for waiter in (self.open, self.welcomed):
            if not waiter.done():
                waiter.set_exception(ConnectionError("closed before welcome"))

    def send_text(self, text):
        self.transport.write(client_frame(Opcode.TEXT, text.encode()))

    def data_received(self, data):
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.transport.close()
                return
            del buffer[: end + 4]
            self.upgraded = True
            self.open.set_result(True)
        now = time.time_ns()
        seen = self.seen
        position, size = 0, len(buffer)
        while size - position >= 2:
            length = buffer[position + 1] & 0x7F
            header = 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 4])
                header = 4
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[position + 2 : position + 10])
                header = 10
            end = position + header + length
            if end > size:
                break
            opcode = buffer[position] & 0x0F
            start = position + header
            if opcode == 1:
                match = MESSAGE.match(buffer, start, end)
                if match:
                    seq = int(match.group(1))
                    seen[seq] = seen.get(seq, 0) + 1
                    self.latencies.append((now - int(match.group(2))) / 1e6)
                elif buffer.startswith(WELCOME, start) and not self.welcomed.done():
                    self.welcomed.set_result(True)
                elif error := ERROR.match(buffer, start, end):
                    self.errors[error.group(1).decode()] += 1
            elif opcode == 9:  # ping: answer, or the server closes the socket
                self.transport.write(
                    client_frame(Opcode.PONG, bytes(buffer[start:end]))
                )
            elif opcode == 8:
                self.transport.close()
            position = end
        del buffer[:position]
