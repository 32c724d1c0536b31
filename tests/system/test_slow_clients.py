"""
A client that stops reading, under both servers: the others keep chatting at
full speed, the server closes the stalled socket once CHAT_SEND_BUFFER_BYTES wait
for it (4408) instead of buffering without end, and the client catches up by seq
when it comes back.
"""

import asyncio
import json
import secrets
import socket
import time

import pytest

from chat.announcements import WINDOW_SECONDS
from tests.harness.clients import ChatClient
from tests.harness.fixtures import (
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import http_get, session_cookie
from tests.harness.servers import Cluster, Daphne, Uvicorn, static_env
from tests.harness.waiting import wait_until_async

pytestmark = pytest.mark.processes

SEND_BUFFER_BYTES = 64 * 1024
CATCH_UP_LIMIT = 20
# Long messages: what the stalled socket misses is many times the limit, and
# far more than the server's memory may grow by.
TEXT_LENGTH = 48_000
MESSAGES = 300
# The stalled socket must be out of the room before this many (1.9 MB of
# frames, 30 times the limit).
MAX_MESSAGES_UNTIL_DROPPED = 40
# A healthy reader gets each message within this, however full the other
# socket is (generous: the machine is shared; typical waits are milliseconds).
MESSAGE_TIMEOUT = 5
# What the server's resident memory may grow by while 14 MB go past the stalled
# socket (a server that kept them for it would grow by that much).
MAX_RSS_GROWTH = 8 * 2**20
# linux/tcp.h: a socket whose connection was reset.
TCP_CLOSE = 7
# Small enough that the kernel's buffers for the stalled socket fill at once.
FROZEN_RCVBUF = 4096
FROZEN_MSS = 1400


@pytest.fixture(params=[Daphne, Uvicorn], ids=["daphne", "uvicorn"])
def server(request, database, tmp_path, _collected_static):
    env = {
        **static_env(),
        "CHAT_SEND_BUFFER_BYTES": SEND_BUFFER_BYTES,
        "CHAT_CATCH_UP_LIMIT": CATCH_UP_LIMIT,
        "CHAT_MAX_MESSAGE_LENGTH": TEXT_LENGTH + 100,
        # One sender at full speed: the rate limit is not under test here.
        "CHAT_RATE_BURST": 10_000,
        "CHAT_RATE_PER_SECOND": 10_000,
    }
    with Cluster(tmp_path, database, instances=0, env=env) as cluster:
        yield cluster.add_server(request.param)


def small_window_socket(server):
    """
    A connected TCP socket with little room in the kernel for what the server
    sends, so that its own buffer fills soon. The receive buffer, set before
    connecting, caps the window the server may send into; the segment size caps
    the server's send buffer, which Linux sizes from it (loopback's 64 KiB
    segments would give it megabytes).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FROZEN_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, FROZEN_MSS)
    sock.connect(("127.0.0.1", server.port))
    sock.setblocking(False)
    return sock


async def test_a_reader_that_stops_is_dropped_and_catches_up(server, room):
    slug, _room_id = room
    cookies = [await session_cookie(server, slug) for _ in range(3)]
    sender = ChatClient("sender", slug, cookie=cookies[0])
    healthy = ChatClient("healthy", slug, cookie=cookies[1])
    frozen = ChatClient("frozen", slug, cookie=cookies[2])
    clients = (sender, healthy, frozen)
    try:
        await sender.connect(server)
        await healthy.connect(server)
        frozen_socket = small_window_socket(server)
        await frozen.connect(server, sock=frozen_socket)
        await healthy.expect("joined", nickname="frozen", participants=3)
        # It reads nothing more, from the kernel or anywhere else.
        frozen.ws.transport.pause_reading()
        baseline = peak = server.rss()

        sent = []
        waits = []

        async def say_and_see():
            nonlocal peak
            # Random, so that no compression on the way could shrink it.
            text = (
                f"{len(sent):05d} " + secrets.token_urlsafe(TEXT_LENGTH)[:TEXT_LENGTH]
            )
            sent.append(text)
            mark = healthy.mark()
            started = time.monotonic()
            await sender.say(text)
            await healthy.expect(
                "message", since=mark, text=text, timeout=MESSAGE_TIMEOUT
            )
            waits.append(time.monotonic() - started)
            peak = max(peak, server.rss())

        def frozen_left():
            return any(f["nickname"] == "frozen" for f in healthy.of_type("left"))

        dropped_after = None
        while len(sent) < MESSAGES:
            await say_and_see()
            if dropped_after is None and frozen_left():
                dropped_after = len(sent)
                left = healthy.of_type("left")[0]
                assert left == {
                    "type": "left",
                    "nickname": "frozen",
                    "participants": 2,
                }
                assert healthy.users == {"sender", "healthy"}
            if dropped_after is None and len(sent) == MAX_MESSAGES_UNTIL_DROPPED:
                # Its departure may wait for the room's announcement window
                # (chat/announcements.py), which its arrival opened.
                await wait_until_async(
                    frozen_left,
                    WINDOW_SECONDS + 2,
                    f"the stalled socket to leave the room after {len(sent)} "
                    f"messages ({len(sent) * TEXT_LENGTH} bytes)",
                )

        # The server said why, once, in its log, and queued a close frame
        # (4408) behind the bytes the client does not read; then, as the client
        # reads none of them, cut the connection rather than keep it and its
        # buffers open: the client's kernel sees the reset while the client
        # still reads nothing.
        assert server.log().count(f"too_slow room={slug} ") == 1
        await wait_until_async(
            lambda: tcp_state(frozen_socket) == TCP_CLOSE,
            10,
            "the server to cut the stalled connection",
        )
        # What it had not read went with the connection, the close frame too.
        frozen.ws.transport.resume_reading()
        closed = await frozen.expect("_closed")
        assert closed["code"] == 1006
        had = frozen.cursor
        assert had < dropped_after

        # Back with its last_seq: the welcome carries what it missed, from the
        # next seq on, up to the catch-up limit and as much as fits in one
        # frame (one of these long messages); the history API has the rest.
        welcome = await frozen.connect(server)
        given = [m["seq"] for m in welcome["history"]]
        assert given and given == list(range(had + 1, had + 1 + len(given)))
        assert len(given) <= CATCH_UP_LIMIT and welcome["has_more"]
        assert welcome["last_seq"] == given[-1]
        assert welcome["users"] == ["frozen", "healthy", "sender"]
        await healthy.expect("joined", nickname="frozen", participants=3)
        rest = await history_after(server, slug, welcome["last_seq"])
        assert [m["seq"] for m in rest] == list(
            range(had + 1 + len(given), len(sent) + 1)
        )
        await frozen.fill_gap()
        assert frozen.texts() == sent
        assert frozen.repeated_frames == 0
        assert healthy.texts() == sent
        assert healthy.repeated_frames == 0

        growth = peak - baseline
        assert growth < MAX_RSS_GROWTH
        assert server.alive
        assert not server.tracebacks()
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    waits.sort()
    print(
        f"\n{type(server).__name__}: stalled socket closed after "
        f"{dropped_after} messages of {TEXT_LENGTH} bytes; it had read {had}; "
        f"healthy reader's wait p50 {waits[len(waits) // 2] * 1000:.0f} ms, "
        f"max {waits[-1] * 1000:.0f} ms; RSS {baseline / 2**20:.1f} MiB, "
        f"peak {peak / 2**20:.1f} MiB (+{growth / 2**20:.1f})"
    )


def tcp_state(sock):
    """The kernel's state of a TCP socket (the first byte of struct tcp_info)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


async def history_after(server, slug, after):
    """Every message after seq `after`, page by page, from the history API."""
    messages = []
    while True:
        url = f"{server.http}/rooms/{slug}/messages?after={after}&limit=100"
        status, _headers, body = await http_get(url)
        assert status == 200
        page = json.loads(body)
        messages += page["messages"]
        if not page["has_more"]:
            return messages
        after = page["through"]
