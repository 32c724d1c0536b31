"""The operator's figures (chat/metrics.py) move as people chat, read through
/metrics (chat/metrics_endpoint.py)."""

import os
import subprocess
import sys

import pytest
from django.test import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from chat.hub import get_hub

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-check-token"


@pytest.fixture
def token(settings):
    settings.CHAT_METRICS_TOKEN = TOKEN
    return TOKEN


async def scrape():
    """Every sample of /metrics: (name, labels) -> value."""
    response = await AsyncClient().get(
        "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def moved(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


async def test_the_figures_move_as_people_chat(token, joined, make_client):
    before = await scrape()
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.say("hello")
    await bob.expect("message", text="hello")
    await alice.expect("message", text="hello")
    stranger = await make_client()
    await stranger.say("not in the room yet")
    await stranger.expect("error", code="not_joined")
    await get_hub().liveness.beat()
    after = await scrape()

    assert moved(before, after, "chat_joins_total", transport="websocket") == 2
    assert moved(before, after, "chat_connections", transport="websocket") == 2
    assert moved(before, after, "chat_messages_saved_total") == 1
    # The message to both, and bob's arrival to alice.
    assert moved(before, after, "chat_deliveries_total") >= 3
    assert moved(before, after, "chat_refusals_total", code="not_joined") == 1
    assert moved(before, after, "chat_save_seconds_count") == 1
    assert moved(before, after, "chat_fanout_lag_seconds_count") >= 1
    assert moved(before, after, "chat_instance_heartbeats_total") == 1
    assert after[("chat_hub_pending_events", ())] == 0

    await bob.close()
    await alice.expect("left", nickname="bob")
    gone = await scrape()
    assert moved(after, gone, "chat_connections", transport="websocket") == -1


async def test_without_a_token_setting_there_is_no_endpoint(settings):
    settings.CHAT_METRICS_TOKEN = ""
    response = await AsyncClient().get("/metrics")
    assert response.status_code == 404


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}"])
async def test_the_figures_need_the_token(token, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await AsyncClient().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"chat_" not in response.content


def test_several_processes_are_summed_in_multiprocess_mode(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    count = (
        "from chat import metrics; metrics.MESSAGES_SAVED.inc({n}); "
        "metrics.CONNECTIONS.labels('websocket').inc({n})"
    )
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", count.format(n=n)], env=env, check=True)
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from chat import metrics; print(metrics.exposition()[0].decode())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    samples = [
        (sample.name, sample.value)
        for family in text_string_to_metric_families(shown)
        for sample in family.samples
    ]
    assert ("chat_messages_saved_total", 5) in samples
    # Both processes have stopped: no connection of theirs is counted.
    assert not [value for name, value in samples if name == "chat_connections"]
