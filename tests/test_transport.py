"""Writing pre-framed bytes straight to a Daphne (Twisted) connection."""

import socket

import pytest

from chat.transport import TwistedSocket


class FakeTransport:
    """The parts of a Twisted TCP transport that TwistedSocket reads."""

    TLS = False

    def __init__(self, sock):
        self.socket = sock
        self.connected = True
        self.disconnecting = False
        self._aborting = False
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.queued = []

    def write(self, data):
        self.queued.append(data)
        self._tempDataLen += len(data)


class FakeProtocol:
    def __init__(self, transport):
        self.transport = transport


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    yield ours, theirs
    ours.close()
    theirs.close()


def received(sock):
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


def test_with_nothing_queued_the_bytes_go_out_at_once(pair):
    ours, theirs = pair
    transport = FakeTransport(ours)
    TwistedSocket(FakeProtocol(transport)).write(b"frame")
    assert received(theirs) == b"frame"
    assert transport.queued == []


def test_behind_queued_bytes_they_wait_their_turn(pair):
    ours, theirs = pair
    transport = FakeTransport(ours)
    transport.write(b"first")
    TwistedSocket(FakeProtocol(transport)).write(b"second")
    assert received(theirs) == b""
    assert transport.queued == [b"first", b"second"]


def test_what_the_kernel_does_not_take_is_left_to_twisted(pair):
    ours, theirs = pair
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    transport = FakeTransport(ours)
    data = bytes(range(256)) * 4096  # 1 MiB, more than the socket takes
    TwistedSocket(FakeProtocol(transport)).write(data)
    sent = received(theirs)
    assert 0 < len(sent) < len(data)
    assert sent + b"".join(transport.queued) == data


@pytest.mark.parametrize("state", ["TLS", "disconnecting", "_aborting"])
def test_tls_or_closing_connections_write_through_twisted(pair, state):
    ours, theirs = pair
    transport = FakeTransport(ours)
    setattr(transport, state, True)
    TwistedSocket(FakeProtocol(transport)).write(b"frame")
    assert received(theirs) == b""
    assert transport.queued == [b"frame"]
