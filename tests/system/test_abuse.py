"""
Abuse with real processes: a room flooded with long messages under startup.sh's
frame limits, and a churn of joins from one address. Two Daphne instances over
a private Redis, on a database shared by the module.
"""

import asyncio
import concurrent.futures
import json
import math
import multiprocessing
import time
import uuid

import pytest

from bench.client import Client as LeanClient
from tests.harness.clients import ChatClient, stamped
from tests.harness.fixtures import (
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import session_cookie
from tests.harness.servers import Cluster, static_env

pytestmark = pytest.mark.processes

# startup.sh's frame limits (the protocol's 64 KiB), which also bound what
# Daphne sends.
STARTUP_FRAME_LIMITS = (
    "--websocket-max-message-size",
    "65536",
    "--websocket-max-frame-size",
    "65536",
)
# The shipped defaults (the test run itself raises some for its other tests).
DEFAULT_LIMITS = {
    "CHAT_RATE_BURST": 10,
    "CHAT_RATE_PER_SECOND": 2,
    "CHAT_ADDRESS_RATE_BURST": 60,
    "CHAT_ADDRESS_RATE_PER_SECOND": 20,
    "CHAT_JOIN_BURST": 10,
    "CHAT_JOIN_PER_SECOND": 1,
    "CHAT_ADDRESS_JOIN_BURST": 60,
    "CHAT_ADDRESS_JOIN_PER_SECOND": 5,
}


@pytest.fixture
def cluster(database, tmp_path, _collected_static):
    with Cluster(
        tmp_path,
        database,
        instances=0,
        env={**static_env(), **DEFAULT_LIMITS, "CHAT_PROXY_HOPS": 1},
    ) as made:
        yield made


async def _visitor(server, slug, nickname, address, **kwargs):
    cookie = await session_cookie(server, slug)
    client = ChatClient(nickname, slug, cookie=cookie, forwarded_for=address, **kwargs)
    await client.connect(server)
    return client


async def test_long_messages_cannot_lock_a_room(cluster, room):
    slug, _room_id = room
    server = await asyncio.to_thread(cluster.add_server, args=STARTUP_FRAME_LIMITS)
    # Five visitors post ten messages of 2,000 three-byte characters each:
    # 300 KB, and every join once got `unavailable` (the welcome was over the
    # limit) and its retry `already_joined`.
    spammers = [
        await _visitor(server, slug, f"spam{i}", f"198.51.100.{i + 1}")
        for i in range(5)
    ]
    for n in range(10):
        for spammer in spammers:
            await spammer.say(f"{spammer.nickname}-{n} " + "語" * 1990)
        await asyncio.sleep(0.3)  # within the per-visitor rate
    for spammer in spammers:
        await spammer.settle(50, timeout=30)

    newcomer = await _visitor(server, slug, "newcomer", "203.0.113.5")
    welcome = newcomer.of_type("welcome")[0]
    assert welcome["history"], "the newest messages that fit"
    assert welcome["last_seq"] == 50
    # The rest is a page away, and the room works.
    await newcomer.say("hello")
    await spammers[0].expect("message", text="hello")
    # Someone coming back after all of it catches up in full.
    returning = ChatClient("returning", slug, cookie=await session_cookie(server, slug))
    returning.forwarded_for = "203.0.113.6"
    returning.cursor = 0
    await returning.connect(server)
    await returning.settle(51, timeout=20)
    assert len(returning.texts()) == 51
    await asyncio.gather(*(c.close() for c in [*spammers, newcomer, returning]))
    assert not cluster.tracebacks()


CHURN_PER_SECOND = 200
CHURN_SECONDS = 6


async def _churn(addresses, outcomes, deadline):
    """Cookie-less sockets from one address, joining and leaving at once, to
    each (WebSocket URL, Origin) in turn."""
    attacker = [("X-Forwarded-For", "198.51.100.66")]

    async def one(index):
        url, origin = addresses[index % len(addresses)]
        started = time.monotonic()
        try:
            client = await asyncio.wait_for(
                LeanClient.connect(url, origin, [], attacker), 5
            )
        except (OSError, TimeoutError, ConnectionError):
            outcomes.append(("failed", time.monotonic() - started))
            return
        try:
            nickname = f"x{uuid.uuid4().hex[:8]}"
            client.send_text(json.dumps({"type": "join", "nickname": nickname}))
            await asyncio.wait([client.welcomed, client.closed], timeout=5)
            if client.welcomed.done() and not client.welcomed.exception():
                kind = "joined"
            elif client.errors["rate_limited"]:
                kind = "refused"
            else:
                kind = "failed"
            outcomes.append((kind, time.monotonic() - started))
        except ConnectionError:
            outcomes.append(
                ("refused" if client.errors["rate_limited"] else "failed",
                 time.monotonic() - started)
            )  # fmt: skip
        finally:
            client.transport.close()

    tasks = []
    index = 0
    while time.monotonic() < deadline:
        tasks.append(asyncio.create_task(one(index)))
        index += 1
        await asyncio.sleep(1 / CHURN_PER_SECOND)
    await asyncio.gather(*tasks)


def _churn_process(addresses, seconds):
    """The churn in a process of its own, as an attacker's machine would be: in
    the test's own event loop its thousand sockets delayed the honest clients'
    reading, which the latencies then counted as the servers'."""
    outcomes = []

    async def run():
        await _churn(addresses, outcomes, time.monotonic() + seconds)

    asyncio.run(run())
    return outcomes


async def test_join_churn_from_one_address_does_not_stall_honest_participants(
    cluster, room
):
    slug, _room_id = room
    a = await asyncio.to_thread(cluster.add_server)
    b = await asyncio.to_thread(cluster.add_server)
    alice = await _visitor(a, slug, "alice", "203.0.113.10")
    bob = await _visitor(b, slug, "bob", "203.0.113.11")
    await alice.expect("joined", nickname="bob")

    addresses = [(server.ws_url(slug), server.origin) for server in (a, b)]
    attacker = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn")
    )
    # The attacker's process is up before the clock starts.
    await asyncio.get_running_loop().run_in_executor(attacker, time.monotonic)
    churn = asyncio.get_running_loop().run_in_executor(
        attacker, _churn_process, addresses, CHURN_SECONDS
    )
    deadline = time.monotonic() + CHURN_SECONDS
    sent = 0
    while time.monotonic() < deadline:
        for client in (alice, bob):
            await client.say(stamped(client.nickname))
            sent += 1
        await asyncio.sleep(0.6)  # under 2 a second each, within their rate
    outcomes = await churn
    attacker.shutdown()
    await alice.settle(0, timeout=20)
    await bob.settle(0, timeout=20)

    # The honest pair: every message live on the other side, promptly, and
    # none refused.
    latencies = sorted(alice.latencies + bob.latencies)
    assert len(latencies) == sent
    p99 = latencies[math.ceil(len(latencies) * 0.99) - 1]  # nearest rank
    assert p99 <= 0.5, f"honest p99 {p99:.3f}s"
    for client in (alice, bob):
        assert not client.failed and not client.retries
    # The attacker was let in within its address's budget, the rest refused
    # fast rather than failing slowly.
    kinds = [kind for kind, _seconds in outcomes]
    refused = sorted(seconds for kind, seconds in outcomes if kind == "refused")
    assert kinds.count("failed") == 0, kinds.count("failed")
    assert kinds.count("joined") <= 2 * (60 + 5 * CHURN_SECONDS)
    assert refused and refused[len(refused) // 2] < 0.2
    assert not cluster.tracebacks()
    print(
        f"\nchurn {len(outcomes)} attacker joins: {kinds.count('joined')} joined, "
        f"{len(refused)} refused (median {refused[len(refused) // 2] * 1000:.0f} ms); "
        f"honest p99 {p99 * 1000:.0f} ms over {len(latencies)} messages"
    )
