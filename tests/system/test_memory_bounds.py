"""
What a client can make a server process hold, with the servers started without
any size option: a plain ``daphne`` command (1 MiB messages by its defaults) and
uvicorn without --ws-max-size (16 MiB), beside uvicorn as docs/scaling.md starts
it. The bounds are the chat's own (chat/transport.py, chat/capacity.py):

- a sender that never reads what the server answers is dropped (4408) once
  CHAT_SEND_BUFFER_BYTES wait for it, instead of having its answers buffered;
- one that sends frames far faster than they are answered is cut once 1000
  wait (chat.transport.MAX_WAITING_FRAMES), instead of having them queued;
- a message is never held past CHAT_MAX_FRAME_BYTES, however it is fragmented;
- a process holds at most CHAT_MAX_CONNECTIONS sockets, and turns away more
  with server_full and 1013 until some close.
"""

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.frames import Opcode

from tests.harness.clients import ChatClient, RawWebSocket, masked
from tests.harness.fixtures import (
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.servers import Cluster, Daphne, Uvicorn, static_env

pytestmark = pytest.mark.processes

MiB = 2**20
# CHAT_MAX_FRAME_BYTES and CHAT_SEND_BUFFER_BYTES keep their defaults (64 KiB,
# 1 MiB) unless a test says otherwise.
#
# What the server's resident memory may grow by while the clients below try to
# make it hold 56 MiB (the flood of bad frames) or 47 MiB (the fragments).
MAX_RSS_GROWTH = 20 * MiB
# Joins and connects from one address are rate limited; these tests open many
# from 127.0.0.1 on purpose.
UNLIMITED_JOINS = {"CHAT_JOIN_BURST": 10_000, "CHAT_ADDRESS_JOIN_BURST": 10_000}
# Small enough that the kernel's buffers for a client that does not read fill
# at once (as in tests/system/test_slow_clients.py): what waits is then the server's.
FROZEN_RCVBUF = 4096
FROZEN_MSS = 1400


class UvicornDefaults(Uvicorn):
    """uvicorn with its own message size limit (16 MiB): no --ws-max-size."""

    def command(self) -> list[str]:
        command = super().command()
        at = command.index("--ws-max-size")
        del command[at : at + 2]
        return command


SERVERS = pytest.mark.parametrize(
    "kind",
    [Daphne, Uvicorn, UvicornDefaults],
    ids=["daphne", "uvicorn", "uvicorn-defaults"],
)


@pytest.fixture(name="start")
def fixture_start(database, tmp_path, _collected_static) -> Iterator[Callable]:
    """start(kind, **env): a server of that kind with its own private Redis."""
    clusters = []

    def start(kind: type[Daphne], **env: object) -> Daphne:
        cluster = Cluster(
            tmp_path,
            database,
            instances=0,
            env={**static_env(), **UNLIMITED_JOINS, **env},
        )
        clusters.append(cluster)
        cluster.start()
        return cluster.add_server(kind)

    yield start
    for cluster in clusters:
        cluster.close()


async def still_serves(server: Daphne, slug: str) -> None:
    """A well-behaved client joins, says something and hears it back."""
    client = ChatClient("after", slug)
    try:
        await client.connect(server)
        await client.say("still here")
        await client.expect("message", text="still here")
    finally:
        await client.close()


async def warm_rss(server: Daphne, slug: str) -> int:
    """The server's RSS once it has served a client: the first one loads code,
    opens database and Redis connections and starts the hub (some 20 MiB)."""
    await still_serves(server, slug)
    return server.rss()


def frozen_socket(server: Daphne) -> socket.socket:
    """A TCP socket whose kernel takes in almost nothing of what it is sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FROZEN_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, FROZEN_MSS)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    return sock


# (a) Answers that are never read ------------------------------------------------

FLOOD_FRAMES = 300_000
FLOOD_CHUNK = 500
# Bad frames in bursts, each small enough to be read and answered before the
# next: the answers, not the frames, pile up.
BURST_FRAMES = 50
BURST_EVERY = 0.01
SEND_BUFFER_BYTES = 32 * 1024
CUT_WITHIN = 10
# linux/tcp.h: a socket whose connection was reset.
TCP_CLOSE = 7
BAD_FRAME = masked(Opcode.TEXT, b"{}")


def tcp_state(sock: socket.socket) -> int:
    """The kernel's state of a TCP socket (the first byte of struct tcp_info)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def send_unread(
    server: Daphne, slug: str, frames: int, burst: int, pause: float
) -> tuple[int, int]:
    """Bad frames (each answered with an error) `burst` at a time, `pause`
    seconds apart, reading no answer, until the server cuts the connection;
    the frames sent and the peak RSS. Fails if it is not cut within
    CUT_WITHIN seconds of the last frame."""
    ws = RawWebSocket(server, slug, sock=frozen_socket(server))
    chunk = BAD_FRAME * burst
    sent = 0
    peak = server.rss()
    try:
        while sent < frames:
            ws.send_raw(chunk)
            sent += burst
            peak = max(peak, server.rss())
            time.sleep(pause)
        # All sent: what is left in the kernel's buffers is read and answered,
        # until the server lets go of the connection.
        deadline = time.monotonic() + CUT_WITHIN
        while tcp_state(ws.sock) != TCP_CLOSE:
            if time.monotonic() > deadline:
                pytest.fail(f"still connected {CUT_WITHIN}s after {sent} frames")
            peak = max(peak, server.rss())
            time.sleep(0.05)
    except (ConnectionResetError, BrokenPipeError):
        pass  # cut while sending
    finally:
        ws.sock.close()
    return sent, max(peak, server.rss())


@pytest.mark.parametrize("kind", [Daphne, UvicornDefaults], ids=["daphne", "uvicorn"])
async def test_a_flood_of_bad_frames_never_read_is_cut(start, room, kind) -> None:
    server = start(kind)
    baseline = await warm_rss(server, room.slug)
    sent, peak = await asyncio.to_thread(
        send_unread, server, room.slug, FLOOD_FRAMES, FLOOD_CHUNK, 0
    )

    # Far more frames came at once than any client sends: the server stopped
    # reading them, then let go of them and the connection.
    assert server.log().count("too_many_waiting") == 1
    growth = peak - baseline
    assert growth < MAX_RSS_GROWTH
    await still_serves(server, room.slug)
    assert server.alive
    assert not server.tracebacks()
    print(
        f"\n{kind.__name__}: cut after {sent} bad frames sent unread at full "
        f"speed; RSS {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB "
        f"(+{growth / MiB:.1f})"
    )


@pytest.mark.parametrize("kind", [Daphne, UvicornDefaults], ids=["daphne", "uvicorn"])
async def test_a_sender_that_never_reads_its_answers_is_dropped(
    start, room, kind
) -> None:
    server = start(kind, CHAT_SEND_BUFFER_BYTES=SEND_BUFFER_BYTES)
    baseline = await warm_rss(server, room.slug)
    sent, peak = await asyncio.to_thread(
        send_unread, server, room.slug, FLOOD_FRAMES, BURST_FRAMES, BURST_EVERY
    )

    # Dropped as a slow reader (4408, then cut), said once in the log, long
    # before the 300,000 frames: their answers would be 26 MB.
    log = server.log()
    assert log.count(f"too_slow room={room.slug} ") == 1
    assert "too_many_waiting" not in log
    assert sent < FLOOD_FRAMES // 10
    growth = peak - baseline
    assert growth < MAX_RSS_GROWTH
    await still_serves(server, room.slug)
    assert server.alive
    assert not server.tracebacks()
    print(
        f"\n{kind.__name__}: dropped as too slow after {sent} bad frames, their "
        f"answers unread; RSS {baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} "
        f"MiB (+{growth / MiB:.1f})"
    )


# (b) Messages that never end ----------------------------------------------------

SOCKETS = 50
FRAGMENT = 16 * 1024
# What each socket tries to make the server hold: 47 MiB for the 50.
UNFINISHED = 960 * 1024


def closed_by_server(ws: RawWebSocket) -> bool:
    """Whether the server has closed (or dropped) the connection; reads what
    has come without waiting."""
    while not ws.eof and select.select([ws.sock], [], [], 0)[0]:
        ws.read_some()
    return ws.eof or ws.protocol.close_rcvd is not None


def hold_unfinished(server: Daphne, slug: str) -> tuple[list[int], list[int], int, int]:
    """SOCKETS sockets each start a text message and send its fragments, one
    socket after the other, never the last one; each stops once the server
    ends its connection. The bytes each sent, its close code, the peak RSS and
    the RSS before."""
    sockets = [RawWebSocket(server, slug) for _ in range(SOCKETS)]
    baseline = peak = server.rss()
    sent = [0] * SOCKETS
    first = masked(Opcode.TEXT, b"x" * FRAGMENT, fin=False)
    more = masked(Opcode.CONT, b"x" * FRAGMENT, fin=False)
    try:
        for _round in range(UNFINISHED // FRAGMENT):
            for i, ws in enumerate(sockets):
                if closed_by_server(ws):
                    continue
                try:
                    ws.send_raw(more if sent[i] else first)
                except (ConnectionResetError, BrokenPipeError):
                    ws.eof = True
                    continue
                sent[i] += FRAGMENT
            peak = max(peak, server.rss())
        codes = []
        for ws in sockets:
            codes.append(ws.read_until_closed())
            peak = max(peak, server.rss())
    finally:
        for ws in sockets:
            ws.sock.close()
    return sent, codes, peak, baseline


@SERVERS
async def test_unfinished_messages_past_the_frame_limit_are_refused(
    start, room, kind
) -> None:
    server = start(kind)
    await warm_rss(server, room.slug)
    sent, codes, peak, baseline = await asyncio.to_thread(
        hold_unfinished, server, room.slug
    )

    # Each was refused as its message passed the limit: uvicorn says 1009,
    # Daphne (autobahn) drops the connection. The clients wrote more before
    # they saw it, into the kernel's buffers: closing a socket with such unread
    # bytes resets it, and the reset may overtake uvicorn's close frame.
    if kind is Daphne:
        assert set(codes) == {1006}
    else:
        assert 1009 in codes
        assert set(codes) <= {1009, 1006}
    growth = peak - baseline
    assert growth < MAX_RSS_GROWTH
    await still_serves(server, room.slug)
    assert server.alive
    assert not server.tracebacks()
    print(
        f"\n{kind.__name__}: {SOCKETS} unfinished messages closed with "
        f"{sorted(set(codes))} after at most {max(sent) // 1024} KiB each; RSS "
        f"{baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB "
        f"(+{growth / MiB:.1f})"
    )


# (c) The connection cap ---------------------------------------------------------

CAP = 20
REOPENED = 5
# A closed socket's place is free once its consumer has finished.
FREED_WITHIN = 10


async def attempt(server: Daphne, slug: str) -> tuple:
    """Connect and ping: the open socket once the consumer answers (not_joined),
    or the error frame and close code of a socket turned away. The sockets do
    not join, so that none of this is announced to the room."""
    ws = await ws_connect(
        server.ws_url(slug), origin=server.origin, open_timeout=10, close_timeout=2
    )
    try:
        async with asyncio.timeout(10):
            # A socket turned away may be closed before the ping arrives; the
            # frame sent before the close is read all the same.
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.send(json.dumps({"type": "ping"}))
            frame = json.loads(await ws.recv())
            if frame.get("code") == "not_joined":
                return ws, None, None
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.recv()
            await ws.wait_closed()
    except BaseException:
        await ws.close()
        raise
    return None, frame, ws.close_code


async def attempt_until_accepted(server: Daphne, slug: str) -> ClientConnection:
    deadline = time.monotonic() + FREED_WITHIN
    while True:
        ws, frame, _code = await attempt(server, slug)
        if ws is not None:
            return ws
        assert frame["code"] == "server_full", frame
        if time.monotonic() > deadline:
            pytest.fail(f"no place freed within {FREED_WITHIN}s")
        await asyncio.sleep(0.1)


@SERVERS
async def test_connections_over_the_cap_are_turned_away(start, room, kind) -> None:
    server = start(kind, CHAT_MAX_CONNECTIONS=CAP)
    slug = room.slug
    open_sockets = []
    try:
        for _ in range(CAP):
            ws, frame, _code = await attempt(server, slug)
            assert ws is not None, frame
            open_sockets.append(ws)

        ws, frame, code = await attempt(server, slug)
        assert ws is None
        assert frame["type"] == "error"
        assert frame["code"] == "server_full"
        assert frame["message"]
        assert code == 1013
        # Turned away before the consumer (and its database work) ran.
        log = server.log()
        assert log.count(f" connect room={slug} ") == CAP
        assert log.count("server_full open=20 max=20") == 1

        # Places come back as sockets close, and only as many.
        for ws in open_sockets[:REOPENED]:
            await ws.close()
        del open_sockets[:REOPENED]
        for _ in range(REOPENED):
            open_sockets.append(await attempt_until_accepted(server, slug))
        ws, frame, code = await attempt(server, slug)
        assert (ws, frame["code"], code) == (None, "server_full", 1013)
        assert server.alive
        assert not server.tracebacks()
    finally:
        await asyncio.gather(*(ws.close() for ws in open_sockets))
