"""
Join storm: N WebSocket clients, spread over the server instances, all join the
General room at once, as after a deploy or an instance's crash.

    .venv/bin/python -m bench.joins --clients 1000

Prints the wall time until every client has its welcome (history and the
online list), how many had to try again (a socket closed before its welcome),
the servers' CPU seconds until then and until they are idle again (the
`joined` lines to everyone already in), and the same per join. Its servers and
database are bench/servers.py's, as for bench/run.py.
"""

import argparse
import asyncio
import contextlib
import json
import random
import time

from .client import Client, use_fast_loop
from .run import NO_LIMITS, settle
from .servers import Cluster, cpu_seconds


async def join(url, origin, nickname, retries):
    """Join, trying again after a jittered second when the socket is closed or
    refused first (as the room page does); `retries` counts the second tries."""
    while True:
        try:
            client = await Client.connect(url, origin, [])
            client.send_text(json.dumps({"type": "join", "nickname": nickname}))
            await asyncio.wait_for(client.welcomed, 120)
            return client
        except ConnectionError:
            retries.append(nickname)
            await asyncio.sleep(random.uniform(0.5, 1.5))


async def measure(args):
    async with Cluster(
        instances=args.instances, server=args.server, extra_env=NO_LIMITS
    ) as cluster:
        urls = cluster.ws_urls("general")
        pids = cluster.server_pids()
        # One join per instance first: the first one's imports and connections
        # are not the storm's.
        for index, (url, origin) in enumerate(urls):
            (await join(url, origin, f"warm{index}", [])).transport.close()
        await settle(pids)
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        retries = []
        start = time.monotonic()
        clients = await asyncio.gather(
            *(
                join(*urls[index % len(urls)], f"j{index}", retries)
                for index in range(args.clients)
            )
        )
        welcomed = time.monotonic() - start
        cpu_welcomed = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        await settle(pids)
        cpu_settled = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        for client in clients:
            client.transport.close()
    return {
        "server": args.server,
        "instances": args.instances,
        "clients": len(clients),
        "welcomed_s": round(welcomed, 2),
        # Sockets closed before their welcome and tried again.
        "retries": len(retries),
        "clients_retrying": len(set(retries)),
        "server_cpu_s_welcomed": round(cpu_welcomed, 2),
        "server_cpu_s_settled": round(cpu_settled, 2),
        "server_cpu_ms_per_join": round(cpu_settled / len(clients) * 1000, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        print(json.dumps(asyncio.run(measure(args))))
    return 0


if __name__ == "__main__":
    use_fast_loop()
    raise SystemExit(main())
