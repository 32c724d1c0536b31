"""
A rolling deploy under load: clients chat over two instances while each
instance in turn is stopped with SIGTERM and started again, as App Service does
in a deploy.

    .venv/bin/python -m bench.rolling --clients 1000 --rooms 100 --rate 50

Each client behaves as the room page does: when its socket closes it waits
1 s ± 50 % (then doubling, up to 5 s), connects to an instance the load
balancer picks (at random among the instances in its rotation, which a
restarting instance leaves from its SIGTERM until it is started again), joins
with the last seq it has,
merges the welcome's history into what it has, and resends the messages it sent
that were not confirmed, with their client ids.

Prints the reconnect times (from a socket's close to its new welcome) p50, p99
and max, how the reconnects spread over time, the surviving instance's CPU
while the other restarts, whether every message sent was saved once, and how
many of a room's messages a client did not get live or in a welcome
(`not_live`: a page fetches those over HTTP when it sees the gap or the next
`pong`; this client does not) or got twice. Its servers and
database are bench/servers.py's, as for bench/run.py; the clients are the
websockets library's, one task each.
"""

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.harness.http import session_cookie

from .idle import PINGS
from .run import NO_LIMITS, create_rooms, percentile, room_slug, settle
from .servers import Cluster, cpu_seconds

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 5.0


class Person:
    """One reader and, if asked, sender in a room, who always comes back."""

    def __init__(self, index, slug, sites, first_site, rotation, cookie):
        self.nickname = f"p{index}"
        # A visitor's cookie, as a browser has from the room page: a return is
        # the same person, whose nickname is still held by the socket it left.
        self.cookie = cookie
        self.slug = slug
        self.sites = sites  # [(ws url, origin)], by instance
        self.site = first_site
        self.rotation = rotation  # the instances the load balancer sends to
        self.seen = collections.Counter()  # seq -> times shown
        self.cursor = 0
        self.pending = {}  # client_id -> frame, until confirmed
        self.socket = None
        self.welcomed = asyncio.Event()
        self.closed_at = None
        self.reconnects = []  # (closed at, seconds to the new welcome)
        self.attempts = 0

    async def run(self, stop):
        attempt = 0
        while not stop.is_set():
            url, origin = self.sites[self.site]
            try:
                async with connect(
                    url,
                    origin=origin,
                    open_timeout=30,
                    additional_headers=[("Cookie", self.cookie)],
                ) as socket:
                    self.socket = socket
                    last_seq = self.cursor or None
                    join = {"type": "join", "nickname": self.nickname}
                    await socket.send(json.dumps({**join, "last_seq": last_seq}))
                    async for raw in socket:
                        if self.on_frame(json.loads(raw)):
                            attempt = 0
                            for frame in list(self.pending.values()):
                                await socket.send(json.dumps(frame))
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                pass
            self.socket = None
            self.welcomed.clear()
            if stop.is_set():
                return
            if self.closed_at is None:
                self.closed_at = time.monotonic()
            base = min(BACKOFF_FIRST_S * 2**attempt, BACKOFF_MAX_S)
            attempt += 1
            self.attempts += 1
            await asyncio.sleep(base * random.uniform(0.5, 1.5))
            # The load balancer's pick.
            self.site = random.choice(sorted(self.rotation))

    def on_frame(self, frame):
        """Take in one frame; True when it was the welcome."""
        kind = frame.get("type")
        if kind == "message":
            self.take(frame)
        elif kind == "welcome":
            for message in frame.get("history", []):
                self.take(message)
            self.cursor = max(self.cursor, frame.get("last_seq", 0))
            if self.closed_at is not None:
                self.reconnects.append(
                    (self.closed_at, time.monotonic() - self.closed_at)
                )
                self.closed_at = None
            self.welcomed.set()
            return True
        return False

    def take(self, message):
        # A page shows messages by seq; a seq that comes twice is counted here.
        self.seen[message["seq"]] += 1
        self.cursor = max(self.cursor, message["seq"])
        self.pending.pop(message.get("client_id"), None)

    async def say(self, client_id):
        frame = {"type": "message", "text": client_id, "client_id": client_id}
        self.pending[client_id] = frame
        if self.socket is not None and self.welcomed.is_set():
            with contextlib.suppress(ConnectionClosed):
                await self.socket.send(json.dumps(frame))


async def chat(senders, rate, stop):
    sent = 0
    started = time.monotonic()
    while not stop.is_set():
        target = int((time.monotonic() - started) * rate)
        while sent < target:
            await senders[sent % len(senders)].say(f"m{sent}")
            sent += 1
        await asyncio.sleep(0.02)
    return sent


async def everyone_back(people, timeout):
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(person.welcomed.wait() for person in people))


async def restart(server, index, people, survivor_pid, rotation):
    """Take one instance out of the rotation, SIGTERM it, start it again and
    put it back, and wait until every client it had has come back; the
    survivor's CPU meanwhile."""
    on_it = {id(p): len(p.reconnects) for p in people if p.site == index}
    cpu_before = cpu_seconds(survivor_pid)
    began = time.monotonic()
    rotation.discard(index)
    await asyncio.to_thread(server.stop)
    stopped = time.monotonic() - began
    await asyncio.to_thread(server.start)
    rotation.add(index)
    async with asyncio.timeout(120):
        # Polled: the clients' own tasks move these counts.
        while any(len(p.reconnects) <= on_it.get(id(p), -1) for p in people):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await everyone_back(people, 120)
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(survivor_pid) - cpu_before
    return {
        "stopped_s": round(stopped, 2),
        "all_back_s": round(elapsed, 2),
        "survivor_cpu_s": round(cpu, 2),
        "survivor_cpu_share": round(cpu / elapsed, 3),
    }


def spread(times, began):
    """How many reconnects ended in each second after `began`."""
    counts = collections.Counter(int(closed + took - began) for closed, took in times)
    return [counts.get(second, 0) for second in range(max(counts, default=-1) + 1)]


async def measure(args):
    async with Cluster(
        instances=2, extra_env=NO_LIMITS, server_args=PINGS["daphne"]
    ) as cluster:
        await asyncio.to_thread(create_rooms, cluster, args.rooms)
        stop = asyncio.Event()
        people = []
        rotation = {0, 1}
        for index in range(args.clients):
            slug = room_slug(index, args.rooms)
            sites = cluster.ws_urls(slug)
            first = (index // args.rooms) % 2
            cookie = await session_cookie(cluster.cluster.servers[first], slug)
            people.append(Person(index, slug, sites, first, rotation, cookie))
        tasks = [asyncio.create_task(person.run(stop)) for person in people]
        await everyone_back(people, 300)
        await settle(cluster.server_pids())
        print("all joined; chatting", file=sys.stderr, flush=True)
        senders = people[: args.rooms]
        chatting = asyncio.create_task(chat(senders, args.rate, stop))
        await asyncio.sleep(args.before)
        a, b = cluster.cluster.servers
        restarts = {}
        for index, (name, server, survivor) in enumerate((("a", a, b), ("b", b, a))):
            began = time.monotonic()
            restarts[name] = await restart(
                server, index, people, survivor.pid, rotation
            )
            times = [t for p in people for t in p.reconnects if t[0] >= began]
            took = [t for _closed, t in times]
            restarts[name].update(
                {
                    "reconnects": len(took),
                    "reconnect_ms": {
                        "p50": round(percentile(took, 0.5) * 1000),
                        "p99": round(percentile(took, 0.99) * 1000),
                        "max": round(max(took, default=0) * 1000),
                    },
                    "welcomes_per_second": spread(times, began),
                }
            )
            print(json.dumps({name: restarts[name]}), file=sys.stderr, flush=True)
            await asyncio.sleep(args.between)
        stop.set()
        sent = await chatting
        # The last sends confirmed, and every frame read.
        deadline = time.monotonic() + 30
        while any(p.pending for p in senders) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        rows = cluster.database.query(
            "SELECT r.slug, m.seq FROM chat_message m "
            "JOIN chat_room r ON r.id = m.room_id"
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    stored = collections.defaultdict(set)
    for slug, seq in rows:
        stored[slug].add(seq)
    not_live = sum(len(stored[p.slug] - set(p.seen)) for p in people)
    twice = sum(count - 1 for p in people for count in p.seen.values() if count > 1)
    return {
        "clients": args.clients,
        "rooms": args.rooms,
        "rate": args.rate,
        "sent": sent,
        "saved": len(rows),
        "unconfirmed": sum(len(p.pending) for p in senders),
        "not_live": not_live,
        "shown_twice": twice,
        "restarts": restarts,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="messages/s")
    parser.add_argument("--before", type=float, default=5.0, help="chat first, s")
    parser.add_argument("--between", type=float, default=5.0, help="s between")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(measure(args))))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
