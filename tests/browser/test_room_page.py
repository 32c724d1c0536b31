"""
What people see on the room page in a real browser, against a real server.
"""

import json
import re
import time

import pytest
from playwright.sync_api import expect

from .conftest import write_messages

pytestmark = [pytest.mark.browser, pytest.mark.processes]

PENDING = re.compile(r"\bpending\b")
# The backoff may have grown to its 5 s ceiling (±50 %) while the server was down.
RECONNECT_MS = 25000


def join(page, nickname):
    """Answer the nickname prompt as a person does: it has the focus; type, Enter."""
    field = page.locator("#nickname")
    expect(field).to_be_focused()
    field.press_sequentially(nickname)
    field.press("Enter")
    expect(page.locator("#composer")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()


def say(page, text):
    page.locator("#message").fill(text)
    page.locator("#message").press("Enter")


def watch_text(page, selector, text):
    """
    Watch an element for `text` from now on; the returned function waits until
    it was shown. A text shown for less than a polling interval (a typing
    signal and its stop a moment apart) still counts: the page records it.
    """
    page.evaluate(
        """([selector, text]) => {
            const element = document.querySelector(selector);
            const key = `seen:${selector}:${text}`;
            window[key] = element.textContent === text;
            new MutationObserver((_, observer) => {
                if (element.textContent === text) {
                    window[key] = true;
                    observer.disconnect();
                }
            }).observe(element, {
                childList: true, characterData: true, subtree: true,
            });
        }""",
        [selector, text],
    )

    def wait():
        page.wait_for_function(
            "(key) => window[key] === true", arg=f"seen:{selector}:{text}"
        )

    return wait


def note(page, text):
    """The log's status lines reading exactly `text`."""
    return page.locator("#log li.note").filter(
        has_text=re.compile(rf"^{re.escape(text)}$")
    )


def message(page, text):
    """The log's messages whose text is exactly `text`."""
    return page.locator("#log li.message").filter(
        has=page.locator(".text").get_by_text(text, exact=True)
    )


def message_texts(page):
    return page.locator("#log li.message .text")


def colour(locator):
    return locator.evaluate("el => getComputedStyle(el).color")


def wait_for(page, check, what, timeout=5.0):
    """Wait for something Playwright's own events change (they are handled
    only while a Playwright call runs, hence the short waits)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        page.wait_for_timeout(20)


def run_clock_until(page, check, what, limit_ms=20000):
    """Move a page's fake clock on in small steps until `check` holds."""
    for _step in range(limit_ms // 100):
        if check():
            return
        page.clock.run_for(100)
    wait_for(page, check, what)


class Relay:
    """Stands between a page and the server, to lose or hold frames on request."""

    def __init__(self, page):
        self.sockets = []
        self.seen = []
        # A server frame carrying one of these texts is dropped, once each.
        self.lose = []
        self.lost = []
        # While set, message frames from the server wait in `held`.
        self.holding = False
        self.held = []
        page.route_web_socket(re.compile(r"/ws/rooms/"), self._route)

    def _route(self, ws):
        server = ws.connect_to_server()
        self.sockets.append(ws)
        server.on_message(lambda frame: self._from_server(ws, frame))

    def _from_server(self, ws, frame):
        self.seen.append(frame)
        for text in self.lose:
            if f'"text":"{text}"' in frame:
                self.lose.remove(text)
                self.lost.append(text)
                return
        if self.holding and '"type":"message"' in frame:
            self.held.append(frame)
            return
        ws.send(frame)

    def release(self):
        self.holding = False
        while self.held:
            self.sockets[-1].send(self.held.pop(0))

    def saw(self, kind):
        return self.count(kind) > 0

    def count(self, kind):
        return sum(f'"type":"{kind}"' in frame for frame in self.seen)


def test_two_people_join_chat_and_see_each_other_typing(pages):
    alice = pages.open("/rooms/general/")
    join(alice, "alice")
    expect(note(alice, "Welcome to General")).to_have_count(1)
    expect(note(alice, "there's 1 participant")).to_be_visible()

    bob = pages.open("/rooms/general/")
    join(bob, "bob")
    expect(note(bob, "Welcome to General")).to_have_count(1)
    expect(note(bob, "there are 2 participants")).to_be_visible()
    expect(note(alice, "bob joined")).to_be_visible()
    expect(note(alice, "there are 2 participants")).to_be_visible()
    for page in (alice, bob):
        expect(page.locator("#users li")).to_have_text(["alice", "bob"])
        expect(page.locator("#count")).to_have_text("2")

    say(alice, "hello bob")
    expect(message(bob, "hello bob")).to_have_count(1)
    say(bob, "hi alice")
    expect(message(alice, "hi alice")).to_have_count(1)
    expect(message(alice, "hi alice").locator(".nickname")).to_have_text("bob")
    expect(message(bob, "hello bob").locator(".nickname")).to_have_text("alice")

    # Each nickname has its own colour, the same on every page.
    alice_colour = colour(message(alice, "hello bob").locator(".nickname"))
    bob_colour = colour(message(bob, "hi alice").locator(".nickname"))
    assert len({alice_colour, bob_colour, colour(message_texts(alice).first)}) == 3
    expect(message(bob, "hello bob").locator(".nickname")).to_have_css(
        "color", alice_colour
    )
    expect(message(alice, "hi alice").locator(".nickname")).to_have_css(
        "color", bob_colour
    )

    # Typing shows on the other page, and goes when alice pauses (well before
    # the indicator's own 6 s expiry)...
    typing = bob.locator("#typing")
    seen = watch_text(bob, "#typing", "alice is typing")
    alice.locator("#message").press_sequentially("I was thinking", delay=30)
    seen()
    expect(typing).to_have_text("", timeout=3000)
    # ...and when her message arrives.
    seen = watch_text(bob, "#typing", "alice is typing")
    alice.locator("#message").press_sequentially(" about lunch", delay=30)
    seen()
    alice.locator("#message").press("Enter")
    expect(message(bob, "I was thinking about lunch")).to_have_count(1)
    expect(typing).to_have_text("", timeout=3000)
    expect(alice.locator("#typing")).to_have_text("")

    # Every message once, in the order sent, on both pages.
    sent = ["hello bob", "hi alice", "I was thinking about lunch"]
    for page in (alice, bob):
        expect(message_texts(page)).to_have_text(sent)
        expect(page.locator("#log li.message.pending")).to_have_count(0)


def test_a_taken_nickname_is_asked_again(pages, make_room):
    slug = make_room("Names")
    first = pages.open(f"/rooms/{slug}/")
    join(first, "sam")
    second = pages.open(f"/rooms/{slug}/")
    field = second.locator("#nickname")
    field.press_sequentially("SAM")
    field.press("Enter")
    expect(second.locator("#login-error")).to_contain_text("already in this room")
    expect(field).to_be_focused()
    expect(second.locator("#composer")).to_be_hidden()
    field.fill("")
    join(second, "samantha")
    expect(note(first, "samantha joined")).to_be_visible()


def test_own_message_is_pending_until_the_server_copy_comes_back(pages, make_room):
    slug = make_room("Pending")
    page = pages.open(f"/rooms/{slug}/")
    # The server's copy is held back, to see the page before it arrives.
    relay = Relay(page)
    join(page, "pat")

    relay.holding = True
    say(page, "first words")
    mine = message(page, "first words")
    expect(mine).to_have_count(1)
    expect(mine).to_have_class(PENDING)
    expect(mine.locator(".nickname")).to_have_text("pat")
    # Told to screen readers, not only shown in grey.
    expect(mine).to_contain_text("first words(sending)")
    expect(page.locator("#message")).to_have_value("")
    wait_for(page, lambda: relay.held, "the server's copy")
    relay.release()
    expect(mine).not_to_have_class(PENDING)
    expect(mine).to_have_count(1)
    expect(mine).to_have_attribute("data-seq", "1")
    expect(mine).not_to_contain_text("(sending)")

    say(page, "second words")
    expect(message(page, "second words")).not_to_have_class(PENDING)
    expect(message_texts(page)).to_have_text(["first words", "second words"])


def test_messages_over_the_rate_are_sent_again_until_saved(pages, make_room):
    slug = make_room("Eager")
    page = pages.open(f"/rooms/{slug}/")
    join(page, "eager")
    # Twelve at once: past the ten a visitor may send in any 5 s, the last two
    # are refused as rate-limited, stay pending and go again by themselves.
    texts = [f"line {i}" for i in range(12)]
    for text in texts:
        say(page, text)
    refusal = "You are sending messages too fast; that one was not sent."
    expect(note(page, refusal).first).to_be_visible()
    for text in texts:
        expect(message(page, text)).not_to_have_class(PENDING, timeout=20000)
    expect(message_texts(page)).to_have_text(texts)
    expect(page.locator("#log li.message.failed")).to_have_count(0)


def test_a_message_refused_for_good_can_be_sent_again(pages, make_room):
    slug = make_room("Refused")
    page = pages.open(f"/rooms/{slug}/")
    join(page, "pat")
    # One character over the limit, past the field's own maxlength.
    page.locator("#message").evaluate("el => el.removeAttribute('maxlength')")
    say(page, "x" * 2001)
    refused = page.locator("#log li.message.failed")
    expect(refused).to_have_count(1)
    expect(refused).to_contain_text("(not sent: ")
    again = refused.get_by_role("button", name="Send again")
    expect(again).to_be_visible()
    again.click()
    # Sent again, and refused again: shown as not sent, with its button back.
    expect(refused).to_have_count(1)
    expect(refused.get_by_role("button", name="Send again")).to_be_visible()
    expect(page.locator("#log li.message")).to_have_count(1)


def test_markup_in_nicknames_and_messages_shows_as_typed(pages, make_room):
    slug = make_room("Escaping")
    reader = pages.open(f"/rooms/{slug}/")
    join(reader, "reader")
    name = "<img src=x onerror=alert(1)>"
    writer = pages.open(f"/rooms/{slug}/")
    join(writer, name)
    expect(note(reader, f"{name} joined")).to_be_visible()
    expect(reader.locator("#users li")).to_have_text([name, "reader"])

    writer.locator("#message").press_sequentially("<i>", delay=30)
    expect(reader.locator("#typing")).to_have_text(f"{name} is typing")
    texts = [
        "<b>bold</b> &amp;",
        "<img src=x onerror=alert(2)>",
        "<script>alert(3)</script>",
        '"><svg onload=alert(4)>',
    ]
    for text in texts:
        say(writer, text)
    for page in (reader, writer):
        expect(message_texts(page)).to_have_text(texts)
        expect(page.locator("#log li.message .nickname")).to_have_text([name] * 4)
        expect(page.locator("#log li.message.pending")).to_have_count(0)
        # Nothing typed became an element.
        injected = page.locator("#room img, #room b, #room i, #room script, #room svg")
        expect(injected).to_have_count(0)
    assert pages.dialogs == []


def test_reconnect_after_a_server_restart_resends_what_was_typed_meanwhile(
    pages, make_room, running_server, database
):
    slug = make_room("Reconnect")
    alice = pages.open(f"/rooms/{slug}/")
    join(alice, "alice")
    bob = pages.open(f"/rooms/{slug}/")
    join(bob, "bob")
    say(alice, "before")
    expect(message(bob, "before")).to_have_count(1)

    running_server.stop()
    for page in (alice, bob):
        expect(note(page, "you have been disconnected")).to_have_count(1)
    # Meanwhile, on another instance, two messages came and one was deleted.
    write_messages(database, slug, {3: "from elsewhere"}, nickname="carol")
    say(alice, "while away 1")
    say(alice, "while away 2")
    expect(alice.locator("#log li.message.pending .text")).to_have_text(
        ["while away 1", "while away 2"]
    )
    expect(note(alice, "attempt to reconnect has failed").first).to_be_visible()

    running_server.start()
    for page in (alice, bob):
        expect(note(page, "you have been reconnected")).to_have_count(
            1, timeout=RECONNECT_MS
        )
    sent = ["before", "from elsewhere", "while away 1", "while away 2"]
    for page in (alice, bob):
        expect(message_texts(page)).to_have_text(sent)
    expect(alice.locator("#log li.message.pending")).to_have_count(0)

    # The room goes on as before.
    say(bob, "after")
    for page in (alice, bob):
        expect(message_texts(page)).to_have_text([*sent, "after"])
        expect(page.locator("#users li")).to_have_text(["alice", "bob"])


def test_load_older_messages_pages_back_over_http(pages, make_room):
    slug = make_room("History", messages=120)
    page = pages.open(f"/rooms/{slug}/")
    join(page, "reader")
    texts = message_texts(page)
    expect(texts).to_have_count(50)
    expect(texts.first).to_have_text("History #71")
    expect(texts.last).to_have_text("History #120")

    older = page.get_by_role("button", name="Load older messages")
    with page.expect_response(re.compile(r"/messages\?before=71&limit=50$")):
        older.click()
    expect(texts).to_have_count(100)
    expect(texts.first).to_have_text("History #21")
    with page.expect_response(re.compile(r"/messages\?before=21&limit=50$")):
        older.click()
    expect(texts).to_have_text([f"History #{n}" for n in range(1, 121)])
    expect(older).to_be_hidden()

    # New messages still go at the end.
    say(page, "newest")
    expect(texts.last).to_have_text("newest")
    expect(texts).to_have_count(121)


def test_an_unknown_room_is_not_found(pages):
    page = pages.open("/")
    response = page.goto(f"{pages.server.http}/rooms/no-such-room/")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.get_by_role("link", name="See the open rooms")).to_be_visible()
    expect(page.locator("#nickname")).to_have_count(0)


def test_an_archived_room_shows_its_history_and_takes_no_messages(pages, make_room):
    slug = make_room("Old news", messages=3, archived=True)
    page = pages.open(f"/rooms/{slug}/")
    expect(page.locator("#archived")).to_contain_text("This room is archived")
    expect(message_texts(page)).to_have_text([f"Old news #{n}" for n in (1, 2, 3)])
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#composer")).to_be_hidden()


def test_phone_layout_keeps_the_newest_line_and_the_composer_in_view(pages, make_room):
    slug = make_room("Phone", messages=60)
    page = pages.open(
        f"/rooms/{slug}/",
        viewport={"width": 375, "height": 667},
        is_mobile=True,
        has_touch=True,
    )
    join(page, "pocket")
    long_word = "https://example.com/" + "a" * 300
    say(page, long_word)
    newest = message(page, long_word)
    expect(newest).not_to_have_class(PENDING)
    expect(newest).to_be_in_viewport()
    expect(page.locator("#message")).to_be_in_viewport()
    expect(page.locator("#users li")).to_have_text(["pocket"])
    expect(page.locator("#users")).to_be_in_viewport()
    # Nothing is wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_lost_live_messages_are_fetched_in_order(pages, make_room):
    slug = make_room("Lost")
    page = pages.open(f"/rooms/{slug}/", fake_clock=True)
    relay = Relay(page)
    join(page, "reader")
    writer = pages.open(f"/rooms/{slug}/")
    join(writer, "writer")

    # A message lost on the way: the next one waits for it, and the gap between
    # them is filled over HTTP.
    fetched = []
    page.on("response", lambda response: fetched.append(response.url))
    relay.lose.append("one")
    say(writer, "one")
    wait_for(page, lambda: relay.lost == ["one"], "the first message to be lost")
    say(writer, "two")
    run_clock_until(page, lambda: message_texts(page).count() == 2, "the gap fill")
    expect(message_texts(page)).to_have_text(["one", "two"])
    assert [url for url in fetched if "/messages?" in url] == [
        f"{pages.server.http}/rooms/{slug}/messages?after=0&limit=200"
    ]

    # The last message lost, nothing after it: the next ping's answer tells of
    # it (pings go every 15 s).
    relay.lose.append("three")
    say(writer, "three")
    wait_for(page, lambda: relay.lost == ["one", "three"], "three to be lost")
    # The page's clock also runs on its own (real time since it was installed),
    # so when the next ping falls is not known here: what is known is that
    # nothing shows the lost message before a pong does.
    pongs = relay.count("pong")
    for _step in range(200):
        if relay.count("pong") > pongs:
            break
        assert message_texts(page).count() == 2, "caught up before any ping"
        page.clock.run_for(100)
    else:
        pytest.fail("no ping within 20 s")
    run_clock_until(page, lambda: message_texts(page).count() == 3, "the ping")
    expect(message_texts(page)).to_have_text(["one", "two", "three"])
    expect(message_texts(writer)).to_have_text(["one", "two", "three"])


def test_a_room_archived_meanwhile_closes_for_good(pages, make_room):
    slug = make_room("Closing")
    page = pages.open(f"/rooms/{slug}/", fake_clock=True)
    relay = Relay(page)
    join(page, "reader")

    # A socket that drops for any other reason comes back...
    relay.sockets[-1].close(code=1011, reason="")
    expect(note(page, "you have been disconnected")).to_have_count(1)
    page.clock.run_for(2000)
    expect(note(page, "you have been reconnected")).to_have_count(1)
    assert len(relay.sockets) == 2

    # ...but not one the server closed because the room was archived.
    archived = "This room has been archived by a moderator; it accepts no messages."
    relay.sockets[-1].send(
        f'{{"type":"error","code":"room_archived","message":"{archived}"}}'
    )
    relay.sockets[-1].close(code=4410, reason="")
    expect(note(page, archived)).to_have_count(1)
    expect(page.locator("#composer")).to_be_hidden()
    # No one is online in an archived room.
    expect(page.locator("#users li")).to_have_count(0)
    expect(page.get_by_role("heading", name="Online")).to_be_hidden()
    page.clock.run_for(60000)
    expect(note(page, "you have been disconnected")).to_have_count(1)
    assert len(relay.sockets) == 2


def test_the_typing_line_names_one_or_two_typers_then_says_several(pages, make_room):
    slug = make_room("Typers")
    page = pages.open(f"/rooms/{slug}/")
    relay = Relay(page)
    join(page, "reader")
    typing = page.locator("#typing")

    def tell(kind, name):
        relay.sockets[-1].send(json.dumps({"type": kind, "nickname": name}))

    tell("typing", "ann")
    expect(typing).to_have_text("ann is typing")
    tell("typing", "ben")
    expect(typing).to_have_text("ann and ben are typing")
    tell("typing", "cy")
    expect(typing).to_have_text("Several people are typing")
    tell("stop_typing", "ann")
    expect(typing).to_have_text("ben and cy are typing")
    tell("stop_typing", "ben")
    tell("stop_typing", "cy")
    expect(typing).to_have_text("")
