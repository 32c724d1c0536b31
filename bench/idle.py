"""
Idle connections: N WebSocket clients joined in rooms of a few, over the server
instances, then nothing but the servers' pings for T seconds.

    .venv/bin/python -m bench.idle --clients 10000 --rooms 2000 --seconds 60

Prints the servers' memory per connection and the CPU they spend, between them,
holding the idle sockets: pings and pongs (Daphne with startup.sh's
`--ping-interval 15`, uvicorn with the same interval), each instance's
heartbeat, the hub's group refreshes. In rooms of a few, the joins' `joined`
lines stay few (N x room size, not N squared). Its servers and database are
bench/servers.py's, as for bench/run.py.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import time

from .client import use_fast_loop
from .run import NO_LIMITS, Stats, connect_all, create_rooms, settle
from .servers import Cluster, cpu_seconds, rss_bytes

# startup.sh's keepalive, for each server.
PINGS = {
    "daphne": ["--ping-interval", "15", "--ping-timeout", "30"],
    "uvicorn": ["--ws-ping-interval", "15", "--ws-ping-timeout", "30"],
}


async def measure(args):
    async with Cluster(
        instances=args.instances,
        server=args.server,
        # Past the default bound of 2000 sockets a process, as an operator
        # who runs this many raises it.
        extra_env={**NO_LIMITS, "CHAT_MAX_CONNECTIONS": str(args.clients)},
        server_args=PINGS[args.server],
    ) as cluster:
        pids = cluster.server_pids()
        await asyncio.to_thread(create_rooms, cluster, args.rooms)
        clients = await connect_all(cluster, args.clients, Stats(), rooms=args.rooms)
        await settle(pids)
        rss = sum(rss_bytes(pid) for pid in pids)
        print(f"idle: server pids {pids}", file=sys.stderr, flush=True)
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        redis_before = sum(cpu_seconds(pid) for pid in cluster.redis_pids)
        start = time.monotonic()
        await asyncio.sleep(args.seconds)
        elapsed = time.monotonic() - start
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        redis_cpu = sum(cpu_seconds(pid) for pid in cluster.redis_pids) - redis_before
        still_open = sum(not client.closed.done() for client in clients)
        for client in clients:
            client.transport.close()
    return {
        "server": args.server,
        "instances": args.instances,
        "clients": len(clients),
        "rooms": args.rooms,
        "idle_s": round(elapsed, 1),
        # Sockets the servers closed meanwhile (a ping not answered in time).
        "closed_while_idle": len(clients) - still_open,
        "rss_kib_per_connection": round(
            (rss - cluster.baseline_rss) / len(clients) / 1024, 1
        ),
        # Of one core, both instances together.
        "server_cpu_share": round(cpu / elapsed, 4),
        "redis_cpu_share": round(redis_cpu / elapsed, 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10000)
    parser.add_argument("--rooms", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    args = parser.parse_args()
    if args.rooms > args.clients:
        parser.error("--rooms cannot exceed --clients")
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(measure(args))))
    return 0


if __name__ == "__main__":
    use_fast_loop()
    raise SystemExit(main())
