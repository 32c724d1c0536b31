"""
A WebSocket client over a plain blocking TCP socket that sends what it is told
to, frame by frame or as raw bytes, and reads only when told to: for clients
that misbehave on purpose (never reading, never finishing a message). The
handshake and the parsing of the server's frames are websockets' sans-I/O
ClientProtocol; frames are written as bytes, so that any may be sent.

Only to 127.0.0.1, with a timeout on every call.
"""

import json
import socket

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Origin
from websockets.uri import parse_uri

TIMEOUT = 10


def masked(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """One client frame (masked, as a client's must be)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


class RawWebSocket:
    def __init__(self, server, slug: str, *, sock: socket.socket | None = None) -> None:
        url = server.ws_url(slug)
        assert url.startswith("ws://127.0.0.1:"), url
        self.sock = sock or socket.create_connection(
            ("127.0.0.1", server.port), timeout=TIMEOUT
        )
        self.sock.settimeout(TIMEOUT)
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
