"""
The room page where WebSockets cannot go: it turns to the HTTP transport by
itself and chats the same with people on WebSockets, and goes back to a
WebSocket once one opens.
"""

import re

import pytest
from playwright.sync_api import expect

from .test_room_page import (
    join,
    message,
    message_texts,
    note,
    say,
    wait_for,
    watch_text,
)

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# As a proxy that strips Upgrade leaves the page: no WebSocket at all.
NO_WEBSOCKET = "delete window.WebSocket;"
# Two failed sockets, their backoffs, then the HTTP join.
FALLBACK_MS = 15000


def transport(page):
    return page.locator("#transport")


def refuse_sockets(page):
    """Every WebSocket the page opens is closed before its welcome, as by a
    proxy that answers the handshake but passes nothing; returns a switch that
    lets them through."""
    state = {"refusing": True}

    def route(ws):
        if state["refusing"]:
            ws.close(code=1011)
        else:
            ws.connect_to_server()

    page.route_web_socket(re.compile(r"/ws/rooms/"), route)
    return lambda: state.update(refusing=False)


def test_a_page_without_websocket_chats_with_a_websocket_user(pages, make_room):
    slug = make_room("Reach")
    alice = pages.open(f"/rooms/{slug}/", script=NO_WEBSOCKET)
    join(alice, "alice")
    expect(note(alice, "Welcome to Reach")).to_have_count(1)
    expect(transport(alice)).to_have_attribute("data-transport", "stream")
    say(alice, "before bob")

    bob = pages.open(f"/rooms/{slug}/")
    join(bob, "bob")
    expect(transport(bob)).to_have_attribute("data-transport", "websocket")
    # bob's welcome brings alice's message; alice hears bob arrive.
    expect(message(bob, "before bob")).to_have_count(1)
    expect(note(alice, "bob joined")).to_be_visible()
    for page in (alice, bob):
        expect(page.locator("#users li")).to_have_text(["alice", "bob"])
        expect(page.locator("#count")).to_have_text("2")

    say(alice, "hello over http")
    expect(message(bob, "hello over http")).to_have_count(1)
    say(bob, "hello over a socket")
    expect(message(alice, "hello over a socket")).to_have_count(1)

    # Typing both ways.
    seen = watch_text(bob, "#typing", "alice is typing")
    alice.locator("#message").press_sequentially("typing", delay=30)
    seen()
    alice.locator("#message").fill("")
    seen = watch_text(alice, "#typing", "bob is typing")
    bob.locator("#message").press_sequentially("typing", delay=30)
    seen()

    sent = ["before bob", "hello over http", "hello over a socket"]
    for page in (alice, bob):
        expect(message_texts(page)).to_have_text(sent)
        expect(page.locator("#log li.message.pending")).to_have_count(0)

    # alice goes: bob hears it once her participant's grace is over.
    alice.close()
    expect(note(bob, "alice left")).to_be_visible()
    expect(bob.locator("#count")).to_have_text("1")


def test_a_page_whose_sockets_fail_falls_back_and_moves_back_quietly(pages, make_room):
    slug = make_room("Fallback")
    bob = pages.open(f"/rooms/{slug}/")
    join(bob, "bob")

    alice = pages.open(f"/rooms/{slug}/")
    allow = refuse_sockets(alice)
    join_started = alice.locator("#nickname")
    expect(join_started).to_be_focused()
    join_started.press_sequentially("alice")
    join_started.press("Enter")
    expect(alice.locator("#composer")).to_be_visible(timeout=FALLBACK_MS)
    expect(transport(alice)).to_have_attribute("data-transport", "stream")
    expect(note(bob, "alice joined")).to_be_visible()
    say(alice, "one")
    expect(message(bob, "one")).to_have_count(1)

    # The WebSocket works again: the page moves back to it in the background,
    # with no line in the log and nothing shown twice.
    allow()
    expect(transport(alice)).to_have_attribute(
        "data-transport", "websocket", timeout=10000
    )
    say(bob, "two")
    say(alice, "three")
    for page in (alice, bob):
        expect(message_texts(page)).to_have_text(["one", "two", "three"])
    expect(alice.locator("#log li.note")).to_have_text(
        ["Welcome to Fallback", "there are 2 participants"]
    )
    # bob saw alice arrive once, and never leave.
    expect(note(bob, "alice joined")).to_have_count(1)
    expect(note(bob, "alice left")).to_have_count(0)
    expect(bob.locator("#count")).to_have_text("2")


def test_a_held_back_stream_turns_to_long_polling(pages, make_room):
    slug = make_room("Polling")
    alice = pages.open(f"/rooms/{slug}/", script=NO_WEBSOCKET)
    # As a proxy that holds streamed responses until they end: the stream's
    # request never answers.
    alice.route("**/events?*", lambda route: None)
    join(alice, "alice")
    expect(transport(alice)).to_have_attribute("data-transport", "poll", timeout=10000)
    bob = pages.open(f"/rooms/{slug}/")
    join(bob, "bob")
    expect(note(alice, "bob joined")).to_be_visible()
    say(bob, "polled")
    expect(message(alice, "polled")).to_have_count(1)
    say(alice, "posted")
    expect(message(bob, "posted")).to_have_count(1)
    expect(message_texts(alice)).to_have_text(["polled", "posted"])


def test_tabs_of_one_visitor_share_one_stream(pages, make_room):
    slug = make_room("Tabs")
    first = pages.open(f"/rooms/{slug}/", script=NO_WEBSOCKET)
    context = first.context
    streams = []
    context.on(
        "request",
        lambda request: "/events?" in request.url and streams.append(request.url),
    )
    join(first, "tabby")
    second = pages.open_in(context, f"/rooms/{slug}/", script=NO_WEBSOCKET)
    # The visitor's nickname for the room is remembered: in without the prompt.
    expect(second.locator("#composer")).to_be_visible()
    expect(second.locator("#users li")).to_have_text(["tabby"])

    bob = pages.open(f"/rooms/{slug}/")
    join(bob, "bob")
    say(bob, "to both tabs")
    for tab in (first, second):
        expect(message(tab, "to both tabs")).to_have_count(1)
    say(second, "from the second tab")
    expect(message(bob, "from the second tab")).to_have_count(1)
    expect(message(first, "from the second tab")).to_have_count(1)
    assert len(streams) == 1, streams
    # One person, counted once.
    expect(bob.locator("#count")).to_have_text("2")

    # The tab holding the stream closes: the other takes it over.
    first.close()
    wait_for(second, lambda: len(streams) == 2, "the second tab's own stream")
    say(bob, "after the first tab")
    expect(message(second, "after the first tab")).to_have_count(1)
    expect(note(bob, "tabby left")).to_have_count(0)


def test_a_nickname_changes_over_http_too(pages, make_room):
    slug = make_room("Rename over HTTP")
    page = pages.open(f"/rooms/{slug}/", script=NO_WEBSOCKET)
    join(page, "tabby")
    expect(transport(page)).to_have_attribute("data-transport", "stream")
    watcher = pages.open(f"/rooms/{slug}/")
    join(watcher, "watcher")

    page.get_by_role("button", name="Change nickname").click()
    field = page.get_by_role("textbox", name="What's your nickname?")
    expect(field).to_have_value("tabby")
    field.fill("tabitha")
    field.press("Enter")
    expect(page.locator("#composer")).to_be_visible()
    expect(note(watcher, "tabby left")).to_have_count(1)
    expect(note(watcher, "tabitha joined")).to_have_count(1)
    say(page, "renamed")
    expect(message(watcher, "renamed").locator(".nickname")).to_have_text("tabitha")
