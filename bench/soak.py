"""
A soak: chatting at a steady rate over two instances for a long time, with
people joining, leaving and reconnecting throughout, while the servers'
resources are sampled.

    .venv/bin/python -m bench.soak --minutes 60

Every --sample seconds it records, per server process, resident memory and open
file descriptors, and for the whole: the database's connections, the presence
rows (chat_connection), Redis's keys and memory. At the end it prints one JSON
object: every sample, and each figure's range after the warm-up (the first
sample is the baseline, taken once every client has joined).

The senders (the first --senders clients) keep their sockets (one the server
closes comes back before it sends again), so that every message they send is
saved once (checked at the end against the database); the others churn: each
second, --churn of them leave (a `leave` frame, then close) or drop (the socket
closed without a word, as a lost network does), and come back on an instance
picked at random, joining from the last seq they saw. Its servers and
database are bench/servers.py's, as for bench/run.py.

With --heap DIR the servers trace their allocations (tracemalloc; slower) and
write a snapshot at every sample (bench/heap/sitecustomize.py); the result then
names, per server, what grew most between the first and the last sample, by
line of code.
"""

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import sys
import time
import tracemalloc
from pathlib import Path

from .client import Client, use_fast_loop
from .idle import PINGS
from .run import NO_LIMITS, Stats, connect_all, create_rooms, room_slug, settle
from .servers import Cluster, rss_bytes

HEAP_HOOK = Path(__file__).parent / "heap"


def heap_env(directory):
    """What makes the servers trace their heap and dump it on SIGUSR2."""
    path = os.pathsep.join(filter(None, [str(HEAP_HOOK), os.environ.get("PYTHONPATH")]))
    return {
        "PYTHONPATH": path,
        "PYTHONTRACEMALLOC": "1",
        "CHAT_BENCH_HEAP_DIR": str(directory),
    }


def heap_growth(directory, pid, top=12):
    """What grew most in one server between its first and last snapshots."""
    taken = sorted(Path(directory).glob(f"{pid}-*.snapshot"))
    if len(taken) < 2:
        return []
    first, last = (tracemalloc.Snapshot.load(str(p)) for p in (taken[0], taken[-1]))
    return [
        {"where": str(stat.traceback), "kib": round(stat.size_diff / 1024, 1)}
        for stat in last.compare_to(first, "lineno")[:top]
    ]


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(cluster, started):
    """One reading of every resource that must not grow."""
    database = cluster.database
    pids = cluster.server_pids()
    redis = cluster.cluster.redis.client()
    row = {
        "minute": round((time.monotonic() - started) / 60, 2),
        "rss_mib": [round(rss_bytes(pid) / 2**20, 1) for pid in pids],
        "fds": [open_fds(pid) for pid in pids],
        "presence_rows": database.count("chat_connection"),
        "redis_keys": redis.dbsize(),
        "redis_used_mib": round(redis.info("memory")["used_memory"] / 2**20, 2),
    }
    if database.base_url:
        ((count,),) = database.query(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        )
        # Less this query's own connection.
        row["db_connections"] = count - 1
    return row


class Churn:
    """Clients that come and go: each step one leaves or drops, and comes back
    on an instance picked at random, from the last seq it saw."""

    def __init__(self, cluster, clients, first, rooms):
        self.cluster = cluster
        self.clients = clients
        self.first = first
        self.rooms = rooms
        self.counts = {
            "left": 0,
            "dropped": 0,
            "found_closed": 0,
            "rejoined": 0,
            "failed": 0,
        }
        # Senders whose socket the server closed, and that came back.
        self.senders_back = 0

    async def step(self):
        index = random.randrange(self.first, len(self.clients))
        old = self.clients[index]
        if old.transport.is_closing():
            # Closed already: by the server, or its last coming back failed.
            self.counts["found_closed"] += 1
        elif random.random() < 0.5:
            old.send_text(json.dumps({"type": "leave"}))
            self.counts["left"] += 1
        else:
            self.counts["dropped"] += 1
        old.transport.close()
        if await self.come_back(index):
            self.counts["rejoined"] += 1
        else:
            self.counts["failed"] += 1

    async def come_back(self, index):
        """Connect client `index` again and join from its last seq."""
        old = self.clients[index]
        slug = room_slug(index, self.rooms)
        urls = self.cluster.ws_urls(slug)
        url, origin = urls[random.randrange(len(urls))]
        try:
            new = await Client.connect(url, origin, old.latencies)
        except OSError:
            return False
        last_seq = max(old.seen, default=0)
        join = {"type": "join", "nickname": f"b{index}", "last_seq": last_seq}
        new.send_text(json.dumps(join))
        try:
            await asyncio.wait_for(new.welcomed, 30)
        except (OSError, TimeoutError):
            # Not left open: the servers' descriptors are what is measured.
            new.transport.close()
            return False
        self.clients[index] = new
        return True


async def chat(churn, senders, rate, churn_rate, until, first_id):
    """Send at `rate` from the first `senders` clients until `until`, churning
    the others meanwhile; how many were sent. Client ids go on from
    `first_id`: a repeated one is taken for a resend. A sender whose socket
    was closed comes back before it sends again."""
    sent = 0
    started = time.monotonic()
    next_churn = started
    while (now := time.monotonic()) < until:
        target = int((now - started) * rate)
        while sent < target:
            index = sent % senders
            if churn.clients[index].transport.is_closing():
                churn.senders_back += await churn.come_back(index)
                continue
            text = f"t{time.time_ns()}"
            client_id = f"s{first_id + sent}"
            frame = {"type": "message", "text": text, "client_id": client_id}
            churn.clients[index].send_text(json.dumps(frame))
            sent += 1
        while churn_rate and next_churn <= now:
            await churn.step()
            next_churn += 1 / churn_rate
        await asyncio.sleep(0.02)
    return sent


def ranges(samples):
    """Each figure's lowest and highest value over the samples."""
    keys = [key for key in samples[0] if key != "minute"]
    result = {}
    for key in keys:
        values = [row[key] for row in samples]
        if isinstance(values[0], list):
            result[key] = [
                [min(v[i] for v in values), max(v[i] for v in values)]
                for i in range(len(values[0]))
            ]
        else:
            result[key] = [min(values), max(values)]
    return result


def snapshot_heaps(cluster, args):
    if args.heap:
        for pid in cluster.server_pids():
            os.kill(pid, signal.SIGUSR2)


async def soak(args):
    extra_env = dict(NO_LIMITS)
    if args.heap:
        extra_env.update(heap_env(args.heap))
    async with Cluster(
        instances=2,
        extra_env=extra_env,
        server_args=PINGS["daphne"],
    ) as cluster:
        await asyncio.to_thread(create_rooms, cluster, args.rooms)
        clients = await connect_all(cluster, args.clients, Stats(), rooms=args.rooms)
        await settle(cluster.server_pids())
        churn = Churn(cluster, clients, args.senders, args.rooms)
        started = time.monotonic()
        until = started + args.minutes * 60
        samples = [sample(cluster, started)]
        snapshot_heaps(cluster, args)
        print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
        sent = 0
        while time.monotonic() < until:
            step_until = min(until, time.monotonic() + args.sample)
            sent += await chat(
                churn, args.senders, args.rate, args.churn, step_until, first_id=sent
            )
            samples.append(sample(cluster, started))
            snapshot_heaps(cluster, args)
            print(json.dumps(samples[-1]), file=sys.stderr, flush=True)
        # Every message the senders sent was saved once.
        await asyncio.sleep(2)
        saved = cluster.database.count("chat_message")
        errors = sum((c.errors for c in clients), start=collections.Counter())
        for client in clients:
            client.transport.close()
        tracebacks = cluster.cluster.tracebacks()
        heap = {}
        if args.heap:
            # The last snapshots are written by then (a server answers SIGUSR2
            # between two of its steps).
            await asyncio.sleep(5)
            for pid in cluster.server_pids():
                heap[pid] = await asyncio.to_thread(heap_growth, args.heap, pid)
    return {
        "minutes": args.minutes,
        "clients": args.clients,
        "rooms": args.rooms,
        "rate": args.rate,
        "churn_per_s": args.churn,
        "sent": sent,
        "saved": saved,
        "errors": dict(errors),
        "churn": churn.counts,
        "senders_back": churn.senders_back,
        "tracebacks": tracebacks,
        "ranges": ranges(samples),
        "samples": samples,
        **({"heap_growth": heap} if args.heap else {}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--rooms", type=int, default=60)
    parser.add_argument("--senders", type=int, default=60)
    parser.add_argument("--rate", type=float, default=20.0, help="messages/s")
    parser.add_argument("--churn", type=float, default=2.0, help="comings and goings/s")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between")
    parser.add_argument("--out", help="also write the result to this file")
    parser.add_argument("--heap", help="trace the servers' heap; snapshots go here")
    args = parser.parse_args()
    if args.senders < args.rooms or args.senders >= args.clients:
        parser.error("--senders must be at least --rooms and fewer than --clients")
    if args.heap:
        args.heap = Path(args.heap).resolve()
        args.heap.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(soak(args))
        text = json.dumps(result)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    use_fast_loop()
    sys.exit(main())
