"""
/metrics of two Daphne processes that share PROMETHEUS_MULTIPROC_DIR, as
several processes behind one port do: read from either while people chat, the
figures are both processes' together; a process that stopped takes its
gauges out of the sum and leaves its counts.
"""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.fixtures import (
    fixture_clients,  # noqa: F401 - a pytest fixture
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.servers import Cluster, static_env
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.processes

TOKEN = "scraper-token-for-tests"


@pytest.fixture
def cluster(database, tmp_path, _collected_static):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {
        **static_env(),
        "PROMETHEUS_MULTIPROC_DIR": str(shared),
        "CHAT_METRICS_TOKEN": TOKEN,
    }
    with Cluster(tmp_path, database, env=env) as cluster:
        yield cluster


def figures(server):
    """Each sample the endpoint shows, by name and labels."""
    request = urllib.request.Request(  # noqa: S310 - loopback http
        f"{server.http}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def websocket_connections(shown):
    return shown.get(("chat_connections", (("transport", "websocket"),)), 0)


async def test_either_process_shows_both_processes_figures(cluster, room, clients):
    a, b = cluster.servers
    alice = await clients("alice", room.slug, a)
    bob = await clients("bob", room.slug, b)
    await alice.expect("joined", nickname="bob", participants=2)
    for text in ("one", "two", "three"):
        await alice.say(text)
    await bob.expect_messages(3)
    await alice.expect_messages(3)

    for server in (a, b):
        shown = figures(server)
        assert websocket_connections(shown) == 2
        assert shown[("chat_joins_total", (("transport", "websocket"),))] == 2
        assert shown[("chat_messages_saved_total", ())] == 3
        # Each message to both sockets, and Bob's joined line to Alice.
        assert shown[("chat_deliveries_total", ())] >= 7
        assert shown[("chat_save_seconds_count", ())] >= 1

    cluster.servers[1].stop()
    # Bob's socket went with its process: out of the sum, its counts kept.
    wait_until(lambda: websocket_connections(figures(a)) == 1, 10, "B's gauge gone")
    assert figures(a)[("chat_messages_saved_total", ())] == 3
