"""
The HTTP transport behind a load balancer that strips Upgrade and has no
affinity: two instances sharing Redis and the database, every request to
whichever instance is next; and the failures it must ride out (an instance
killed, Redis restarted, a proxy that buffers streams).
"""

import pytest
from playwright.sync_api import expect

from tests.harness.balancer import Balancer
from tests.harness.servers import Cluster, Daphne, Uvicorn, static_env

from .conftest import Pages
from .test_room_page import join, message_texts, note, say, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# The first socket's failures and backoffs, then the HTTP join.
FALLBACK_MS = 15000
# A stream cut by an instance's death resumes through the other (its
# EventSource retries after 1 s; the join again after a refusal backs off).
RESUME_MS = 20000


@pytest.fixture
def cluster(request, tmp_path, database):
    kind = getattr(request, "param", Daphne)
    env = {
        # No WebSocket through the balancer: no need to keep trying one.
        "CHAT_WEBSOCKET_RETRY_SECONDS": 600,
        "CHAT_HTTP_GRACE_SECONDS": 3,
        **static_env(),
    }
    with Cluster(tmp_path, database, instances=0, env=env) as cluster:
        cluster.add_server(kind)
        cluster.add_server(kind)
        yield cluster


@pytest.fixture
def make_pages(browser):
    made = []

    def make(server):
        pages = Pages(browser, server)
        made.append(pages)
        return pages

    yield make
    for pages in made:
        pages.close()
        # pytest shows this only for a failed test.
        print("\n".join(pages.frames[-80:]))
    assert [e for pages in made for e in pages.errors] == []


def fall_back_and_join(page, nickname):
    field = page.locator("#nickname")
    expect(field).to_be_focused()
    field.press_sequentially(nickname)
    field.press("Enter")
    expect(page.locator("#composer")).to_be_visible(timeout=FALLBACK_MS)
    expect(page.locator("#transport")).to_have_attribute("data-transport", "stream")


def show_logs(cluster):
    for server in cluster.servers:
        print(f"--- {server.name}\n{server.log()[-3000:]}")


@pytest.mark.parametrize("cluster", [Daphne, Uvicorn], indirect=True)
def test_behind_a_balancer_without_upgrade_or_affinity_the_page_chats(
    cluster, make_room, make_pages
):
    slug = make_room("Balanced")
    a, b = cluster.servers
    with Balancer([a.port, b.port]) as balancer:
        alice = make_pages(balancer).open(f"/rooms/{slug}/")
        fall_back_and_join(alice, "alice")
        bob = make_pages(b).open(f"/rooms/{slug}/")
        join(bob, "bob")
        expect(note(alice, "bob joined")).to_be_visible()
        for page in (alice, bob):
            expect(page.locator("#count")).to_have_text("2")

        texts = [f"alice {i}" for i in range(6)]
        for text in texts:
            say(alice, text)
        # Saved in the order she sent them, though each POST may reach
        # another instance.
        expect(alice.locator("#log li.message.pending")).to_have_count(0)
        say(bob, "bob 0")
        for page in (alice, bob):
            expect(message_texts(page)).to_have_text([*texts, "bob 0"])
            expect(page.locator("#log li.message.pending")).to_have_count(0)

        # Her POSTs went to both instances, and every one was served.
        posts = balancer.requests("POST", "/http/rooms/")
        assert {p.backend for p in posts} == {0, 1}, posts
        assert all(p.status in (200, 204) for p in posts), posts
        assert balancer.requests("GET", "/http/rooms/")
    assert cluster.tracebacks() == {}, show_logs(cluster)


def test_behind_a_buffering_proxy_the_page_long_polls(cluster, make_room, make_pages):
    slug = make_room("Buffered")
    a, b = cluster.servers
    with Balancer([a.port, b.port], buffering=True) as balancer:
        alice = make_pages(balancer).open(f"/rooms/{slug}/")
        field = alice.locator("#nickname")
        field.press_sequentially("alice")
        field.press("Enter")
        expect(alice.locator("#transport")).to_have_attribute(
            "data-transport", "poll", timeout=FALLBACK_MS + 10000
        )
        bob = make_pages(b).open(f"/rooms/{slug}/")
        join(bob, "bob")
        expect(note(alice, "bob joined")).to_be_visible()
        say(bob, "to the poller")
        say(alice, "from the poller")
        for page in (alice, bob):
            expect(message_texts(page)).to_have_text(
                ["to the poller", "from the poller"]
            )
        expect(bob.locator("#count")).to_have_text("2")
        # Both instances' copies of her participant heard bob arrive: she is
        # told once.
        expect(note(alice, "bob joined")).to_have_count(1)
        # The polls went to both instances too.
        polls = balancer.requests("GET", "/poll?")
        assert {p.backend for p in polls} == {0, 1}, polls


def everyone_has_each_once(alice, bob, sent):
    """Every message on both pages once, none pending, in the same order (the
    room's: alice's POSTs and bob's frames may reach it either way round)."""
    for page in (alice, bob):
        expect(message_texts(page)).to_have_count(len(sent), timeout=RESUME_MS)
        expect(page.locator("#log li.message.pending")).to_have_count(
            0, timeout=RESUME_MS
        )
    shown = message_texts(alice).all_inner_texts()
    assert sorted(shown) == sorted(sent)
    assert message_texts(bob).all_inner_texts() == shown


def streaming_instance(balancer):
    return balancer.requests("GET", "/events?")[-1].backend


def test_a_killed_instance_or_a_restarted_redis_loses_nothing(
    cluster, make_room, make_pages
):
    slug = make_room("Survivor")
    a, b = cluster.servers
    with Balancer([a.port, b.port]) as balancer:
        alice = make_pages(balancer).open(f"/rooms/{slug}/")
        fall_back_and_join(alice, "alice")
        stream_at = cluster.servers[streaming_instance(balancer)]
        survivor = b if stream_at is a else a
        bob = make_pages(survivor).open(f"/rooms/{slug}/")
        join(bob, "bob")
        expect(note(alice, "bob joined")).to_be_visible()
        sent = []

        def chat(label):
            for who, page in (("alice", alice), ("bob", bob)):
                text = f"{who} {label}"
                say(page, text)
                sent.append(text)

        chat("before")
        stream_at.kill()
        chat("while the stream is cut")
        everyone_has_each_once(alice, bob, sent)
        # Her stream resumed on the other instance.
        wait_for(
            alice,
            lambda: cluster.servers[streaming_instance(balancer)] is survivor,
            "the stream to resume on the surviving instance",
            timeout=RESUME_MS / 1000,
        )

        cluster.redis.stop()
        chat("while redis is away")
        cluster.redis.start()
        chat("after redis is back")
        # What the layer could not relay comes by catching up.
        everyone_has_each_once(alice, bob, sent)
