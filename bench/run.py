"""
Fan-out benchmark: N WebSocket clients over several server instances and one Redis,
all in one room; S senders at R messages/s in total for T seconds.

    .venv/bin/python -m bench.run --clients 1000 --rate 10 --duration 20

With --rooms K, the clients are spread over K rooms instead (each room's
members over every instance), and the first member of every room sends: many
small rooms, where each message costs its save and relay more than its fan-out.

    .venv/bin/python -m bench.run --clients 2000 --rooms 400 --rate 2000

It starts its own redis-server and server processes on free loopback ports, with a
throwaway SQLite database (or a throwaway PostgreSQL database when DATABASE_URL is
set), and stops them by PID when done. See docs/benchmarks.md.
"""

import argparse
import asyncio
import collections
import contextlib
import json
import os
import statistics
import sys
import time

from .client import Client, use_fast_loop
from .http_client import HttpClient
from .servers import Cluster, cpu_seconds, rss_bytes

# The load comes from one address and few visitors: no limit applies.
NO_LIMITS = {
    name: "1000000"
    for name in (
        "CHAT_RATE_BURST",
        "CHAT_RATE_PER_SECOND",
        "CHAT_ADDRESS_RATE_BURST",
        "CHAT_ADDRESS_RATE_PER_SECOND",
        "CHAT_JOIN_BURST",
        "CHAT_JOIN_PER_SECOND",
        "CHAT_ADDRESS_JOIN_BURST",
        "CHAT_ADDRESS_JOIN_PER_SECOND",
    )
}


class Stats:
    def __init__(self):
        self.latencies = []


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def room_slug(index, rooms):
    """The room of client `index`: General, or one of `rooms` in turn."""
    return "general" if rooms == 1 else f"r{index % rooms}"


def create_rooms(cluster, rooms):
    """The rooms r0... beside General, in one statement (an operator's
    room_create, once per room, would take minutes for hundreds)."""
    if rooms == 1:
        return
    values = ", ".join(["(%s, %s, '', false, 0, CURRENT_TIMESTAMP, 0, false)"] * rooms)
    params = [value for n in range(rooms) for value in (f"r{n}", f"r{n}")]
    columns = (
        "name, slug, topic, archived, last_seq, created, slow_mode_seconds, "
        "members_only"
    )
    sql = f"INSERT INTO chat_room ({columns}) VALUES {values}"  # noqa: S608 - placeholders
    cluster.database.query(sql, params)


async def connect_all(cluster, count, stats, concurrency=50, transport="ws", rooms=1):
    """Connect and join `count` clients, spread over the rooms and, within
    each room, over the instances."""
    gate = asyncio.Semaphore(concurrency)
    sites = cluster.http_urls()

    async def start(index):
        slug = room_slug(index, rooms)
        # A room's members on every instance in turn: its messages cross Redis.
        instance = (index // rooms) % len(sites)
        if transport == "http":
            async with gate:
                return await HttpClient.join(
                    sites[instance], slug, f"b{index}", stats.latencies
                )
        url, origin = cluster.ws_urls(slug)[instance]
        async with gate:
            client = await Client.connect(url, origin, stats.latencies)
            join = {"type": "join", "nickname": f"b{index}", "last_seq": 0}
            client.send_text(json.dumps(join))
            await asyncio.wait_for(client.welcomed, 60)
            return client

    return await asyncio.gather(*(start(index) for index in range(count)))


async def settle(pids, timeout=300, quiet=0.05):
    """Wait until the servers are idle: the join storm (N² joined lines) is over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(pid) for pid in pids)
        await asyncio.sleep(1)
        if sum(cpu_seconds(pid) for pid in pids) - before < quiet * len(pids):
            return True
    return False


async def send_load(senders, rate, duration):
    """Send `rate` messages/s in total, spread over the senders, for `duration` s;
    how many each sent, and the seconds it took."""
    interval = 1.0 / rate
    sent = 0
    start = time.monotonic()
    deadline = start + duration
    while time.monotonic() < deadline:
        target = int((time.monotonic() - start) * rate) + 1
        while sent < target:
            sender = senders[sent % len(senders)]
            text = f"t{time.time_ns()}"
            sender.send_text(
                json.dumps({"type": "message", "text": text, "client_id": f"c{sent}"})
            )
            sent += 1
        await asyncio.sleep(min(interval, 0.005))
    rounds, rest = divmod(sent, len(senders))
    each = [rounds + (n < rest) for n in range(len(senders))]
    return each, time.monotonic() - start


async def wait_drained(receivers, expected, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(r.seen) >= n for r, n in zip(receivers, expected, strict=True)):
            return True
        await asyncio.sleep(0.1)
    return False


async def measure(args):
    stats = Stats()
    async with Cluster(
        instances=args.instances,
        server=args.server,
        layer=args.layer,
        extra_env=NO_LIMITS,
        shards=args.shards,
    ) as cluster:
        await asyncio.to_thread(create_rooms, cluster, args.rooms)
        receivers = await connect_all(
            cluster, args.clients, stats, transport=args.transport, rooms=args.rooms
        )
        await settle(cluster.server_pids())
        rss_connected = sum(rss_bytes(pid) for pid in cluster.server_pids())
        # Clients 0..rooms-1 are the first of each room.
        senders = receivers[: max(args.senders, args.rooms)]
        pids = cluster.server_pids()
        print(f"measuring: server pids {pids}", file=sys.stderr, flush=True)
        cpu_before = sum(cpu_seconds(pid) for pid in cluster.server_pids())
        redis_before = sum(cpu_seconds(pid) for pid in cluster.redis_pids)
        own_before = time.process_time()
        sent_each, elapsed = await send_load(senders, args.rate, args.duration)
        # What each client should have: what its room's senders sent.
        by_room = collections.Counter()
        for index, count in enumerate(sent_each):
            by_room[room_slug(index, args.rooms)] += count
        expected_each = [
            by_room[room_slug(index, args.rooms)] for index in range(len(receivers))
        ]
        drained = await wait_drained(receivers, expected_each, timeout=10)
        cpu_after = sum(cpu_seconds(pid) for pid in cluster.server_pids())
        redis_after = sum(cpu_seconds(pid) for pid in cluster.redis_pids)
        own_cpu = time.process_time() - own_before
        rss_idle = cluster.baseline_rss
        for receiver in receivers:
            receiver.transport.close()

    sent = sum(sent_each)
    expected = sum(expected_each)
    actual = sum(sum(r.seen.values()) for r in receivers)
    unique = sum(len(r.seen) for r in receivers)
    duplicates = actual - unique
    lost = expected - unique
    server_cpu = cpu_after - cpu_before
    lat = stats.latencies
    result = {
        "transport": args.transport,
        "server": args.server,
        "layer": args.layer,
        "instances": args.instances,
        "clients": len(receivers),
        "rooms": args.rooms,
        "senders": len(senders),
        "rate": args.rate,
        "duration_s": round(elapsed, 1),
        "sent": sent,
        "expected_deliveries": expected,
        "actual_deliveries": actual,
        "lost": lost,
        "duplicates": duplicates,
        # Error frames the senders got: messages refused, never saved.
        "refused": dict(sum((r.errors for r in senders), collections.Counter())),
        "drained": drained,
        "messages_per_s": round(sent / elapsed),
        "deliveries_per_s": round(unique / elapsed),
        "latency_ms": {
            "p50": round(percentile(lat, 0.50), 1),
            "p95": round(percentile(lat, 0.95), 1),
            "p99": round(percentile(lat, 0.99), 1),
            "max": round(max(lat), 1) if lat else None,
            "mean": round(statistics.fmean(lat), 1) if lat else None,
        },
        "server_cpu_s_per_1000": round(server_cpu / max(unique, 1) * 1000, 4),
        "redis_cpu_s_per_1000": round(
            (redis_after - redis_before) / max(unique, 1) * 1000, 4
        ),
        # The load generator shares the cores with what it measures.
        "load_generator_cpu_share": round(own_cpu / elapsed, 2),
        "rss_kib_per_connection": round(
            (rss_connected - rss_idle) / len(receivers) / 1024, 1
        ),
    }
    return result


def saturation(args, rates):
    """One run per rate; the highest deliveries/s with p99 under --max-p99-ms,
    nothing lost."""
    best = None
    for rate in rates:
        args.rate = rate
        result = asyncio.run(measure(args))
        ok = result["lost"] == 0 and result["latency_ms"]["p99"] < args.max_p99_ms
        print(
            f"rate {rate:>6.0f}/s: {result['messages_per_s']:>6} messages/s, "
            f"{result['deliveries_per_s']:>7} deliveries/s, "
            f"p99 {result['latency_ms']['p99']:>7} ms, lost {result['lost']}, "
            f"cpu/1000 {result['server_cpu_s_per_1000']}, "
            f"load generator {result['load_generator_cpu_share']:.0%} of a core"
            + ("" if ok else "  (fails)"),
            flush=True,
        )
        if ok and (
            best is None or result["deliveries_per_s"] > best["deliveries_per_s"]
        ):
            best = result
    print("saturation:", json.dumps(best))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="messages/s in total")
    parser.add_argument(
        "--rates", help="comma-separated rates: find the saturation point instead"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds")
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument(
        "--rooms", type=int, default=1, help="spread the clients over this many rooms"
    )
    parser.add_argument(
        "--max-p99-ms",
        type=float,
        default=1000.0,
        help="with --rates: the p99 a rate must stay under to pass",
    )
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    parser.add_argument("--layer", choices=["core", "pubsub"], default="core")
    parser.add_argument(
        "--shards", type=int, default=1, help="Redis servers the layer shards over"
    )
    parser.add_argument(
        "--transport",
        choices=["ws", "http"],
        default="ws",
        help="http: every client on the HTTP transport (POSTs, an event stream)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    if max(args.senders, args.rooms) > args.clients:
        parser.error("--senders and --rooms cannot exceed --clients")
    with contextlib.suppress(KeyboardInterrupt):
        if args.rates:
            saturation(args, [float(rate) for rate in args.rates.split(",")])
            return 0
        result = asyncio.run(measure(args))
        if args.json:
            print(json.dumps(result))
        else:
            for key, value in result.items():
                print(f"{key:>26}: {value}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    use_fast_loop()
    sys.exit(main())
