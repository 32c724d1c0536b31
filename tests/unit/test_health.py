"""
/healthz and /readyz as a load balancer's probe sees them, in process: any Host
header, JSON bodies, 503 naming the dependency that is down; and a burst of
probes sharing one run of the checks.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.test import AsyncClient, RequestFactory

from chat import health
from tests.harness.ports import free_port


def redis_layer(url):
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_connect_timeout": 1}]},
        }
    }


# In process, through the whole ASGI request path ---------------------------------


async def test_probes_answer_json_that_is_not_cached(transactional_db):
    client = AsyncClient()

    live = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "channel_layer": "ok"},
    }
    assert ready["Cache-Control"] == "no-store"


async def test_probes_are_not_redirected_to_https(transactional_db, settings):
    settings.SECURE_SSL_REDIRECT = True
    client = AsyncClient()

    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.head("/healthz")).status_code == 200
    site = await client.get("/")
    assert site.status_code == 301
    assert site["Location"].startswith("https://")


async def test_readyz_names_the_channel_layer_when_redis_is_down(
    transactional_db, settings, caplog
):
    settings.CHANNEL_LAYERS = redis_layer(f"redis://127.0.0.1:{free_port()}/0")
    client = AsyncClient()

    ready = await client.get("/readyz")
    live = await client.get("/healthz")

    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "fail"
    assert body["failing"] == ["channel_layer"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"].startswith("failed: ")
    assert live.status_code == 200
    [record] = [r for r in caplog.records if "readyz_failed" in r.getMessage()]
    assert "dependency=channel_layer" in record.getMessage()
    assert "cause=ConnectionError" in record.getMessage()


# A burst of probes: one run of the checks at a time, shared --------------------


PROBES = 40


class Counting:
    """A check that counts its runs and how many overlap, taking `seconds`."""

    def __init__(self, seconds=0.2, fail=False, hang=None):
        self.seconds = seconds
        self.fail = fail
        self.hang = hang
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        self.most_threads = 0
        self.lock = threading.Lock()

    def __call__(self):
        with self.lock:
            self.runs += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            threads = [t for t in threading.enumerate() if t.name.startswith("readyz")]
            self.most_threads = max(self.most_threads, len(threads))
        try:
            if self.hang is not None:
                self.hang.wait(10)
            time.sleep(self.seconds)
            if self.fail:
                raise ConnectionError("refused")
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def checks(monkeypatch):
    health.forget_results()
    made = {"database": Counting(), "channel_layer": Counting()}
    monkeypatch.setattr(health, "CHECKS", made)
    yield made
    health.forget_results()


def probe_all(count=PROBES):
    """`count` probes at once, each in a thread of its own as under ASGI."""
    start = threading.Barrier(count)

    def one(_n):
        start.wait(5)
        response = health.readyz(RequestFactory().get("/readyz"))
        return response.status_code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_probes_share_one_run_of_the_checks(checks):
    statuses = probe_all()

    assert statuses == [200] * PROBES
    for check in checks.values():
        assert check.runs == 1
        assert check.most_at_once == 1
        # This check's thread, and at most the one before it on its way out.
        assert check.most_threads <= 2


def test_a_result_is_reused_for_about_a_second(checks, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(health, "clock", lambda: clock[0])

    probe_all(5)
    clock[0] += health.REUSE_SECONDS * 0.9
    probe_all(5)
    reused = checks["database"].runs
    clock[0] += health.REUSE_SECONDS * 0.2
    probe_all(5)

    assert reused == 1
    assert checks["database"].runs == 2


def test_a_failure_is_shared_too_and_logged_once(checks, caplog):
    checks["channel_layer"].fail = True

    statuses = probe_all()

    assert statuses == [503] * PROBES
    assert checks["channel_layer"].runs == 1
    lines = [r for r in caplog.records if "readyz_failed" in r.getMessage()]
    assert len(lines) == 1


def test_a_hung_check_holds_one_thread_not_one_per_probe(checks, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(health, "clock", lambda: clock[0])
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.1)
    release = threading.Event()
    checks["database"].hang = release
    try:
        for _round in range(4):
            assert probe_all(5) == [503] * 5
            clock[0] += health.REUSE_SECONDS
        hung = checks["database"].runs
    finally:
        release.set()

    # The first run is still waiting: the later ones did not start another.
    assert hung == 1
    assert checks["channel_layer"].runs == 4


def test_probes_in_a_burst_open_no_database_connection_each(transactional_db):
    """The real checks, counted where they open connections."""
    health.forget_results()
    opened = []
    real = health.CHECKS["database"]

    def counted():
        opened.append(1)
        real()

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(health.CHECKS, "database", counted)
        statuses = probe_all(20)
    health.forget_results()

    assert statuses == [200] * 20
    assert len(opened) == 1
