"""
What helps people read the room: a line where each day starts, one person's
messages in a row under one name, a way down to messages that came while they
were scrolled up, the unread count in a hidden tab's title, and the typing line.
"""

import datetime
import json
import re
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from .test_room_page import Relay, join, message, note, say, wait_for
from .test_themes import CONTRAST

pytestmark = [pytest.mark.browser, pytest.mark.processes]

# The reader's own time zone, not the server's (UTC): their days are its days.
ZONE = "Pacific/Auckland"

# The page's idea of whether it is seen, settable from the test; the page reads
# it as the browser's own (document.visibilityState, "visibilitychange").
HIDDEN_FROM_THE_START = """(() => {
  let state = "hidden";
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true,
    get: () => state,
  });
  window.setVisibility = (next) => {
    state = next;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();"""


def write_dated(database, slug, rows):
    """Messages written straight into the room at the times given (aware
    datetimes), each (nickname, visitor, text, created), seqs from 1."""
    room_id = database.query("SELECT id FROM chat_room WHERE slug = %s", (slug,))
    room_id = room_id[0][0]
    for seq, (nickname, visitor, text, created) in enumerate(rows, start=1):
        stamp = created.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
        database.query(
            "INSERT INTO chat_message "
            "(room_id, seq, nickname, text, created, client_id, visitor) "
            "VALUES (%s, %s, %s, %s, %s, '', %s)",
            (room_id, seq, nickname, text, stamp, visitor),
        )
    database.query(
        "UPDATE chat_room SET last_seq = %s WHERE id = %s", (len(rows), room_id)
    )


def write_dated_after(database, slug, seq, nickname, text):
    """One message of now at `seq`, as another instance would save it (the
    page hears of it when it catches up)."""
    room_id = database.query("SELECT id FROM chat_room WHERE slug = %s", (slug,))
    room_id = room_id[0][0]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
    database.query(
        "INSERT INTO chat_message "
        "(room_id, seq, nickname, text, created, client_id, visitor) "
        "VALUES (%s, %s, %s, %s, %s, '', %s)",
        (room_id, seq, nickname, text, stamp, f"visitor-{nickname}"),
    )
    database.query("UPDATE chat_room SET last_seq = %s WHERE id = %s", (seq, room_id))


def days_and_messages(page):
    return page.locator("#log li.day, #log li.message")


def days(page):
    return page.locator("#log li.day")


def at_bottom(page):
    return page.locator("#log").evaluate(
        "el => el.scrollHeight - el.scrollTop - el.clientHeight < 2"
    )


def test_each_day_starts_with_a_line_saying_which_in_the_readers_time_zone(
    pages, make_room, database
):
    slug = make_room("Days")
    zone = ZoneInfo(ZONE)
    now = datetime.datetime.now(zone)
    yesterday = datetime.datetime.combine(
        now.date() - datetime.timedelta(days=1), datetime.time(12), zone
    )
    # 9:30 in Auckland on 6 March 2020 was still 5 March in UTC.
    long_ago = datetime.datetime(2020, 3, 6, 9, 30, tzinfo=zone)
    write_dated(
        database,
        slug,
        [
            ("ann", "visitor-ann", "from long ago", long_ago),
            ("ann", "visitor-ann", "yesterday's words", yesterday),
            ("ann", "visitor-ann", "more of yesterday", yesterday),
            ("ben", "visitor-ben", "today's words", now),
        ],
    )
    page = pages.open(f"/rooms/{slug}/", timezone_id=ZONE)
    relay = Relay(page)
    join(page, "reader")

    expect(days_and_messages(page)).to_have_count(7)
    expect(days_and_messages(page)).to_contain_text(
        [
            "Friday, March 6, 2020",
            "from long ago",
            "Yesterday",
            "yesterday's words",
            "more of yesterday",
            "Today",
            "today's words",
        ]
    )
    # Pointed at, a message's time says its full date.
    time = message(page, "from long ago").locator("time")
    expect(time).to_have_attribute("datetime", "2020-03-05T20:30:00Z")
    expect(time).to_have_attribute(
        "title", re.compile(r"^Friday, March 6, 2020\b.*9:30\sAM$")
    )
    # Muted, and readable in both themes.
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        assert days(page).first.evaluate(CONTRAST) >= 4.5, scheme

    # Today's next message goes under today's line: no other.
    say(page, "said just now")
    expect(message(page, "said just now")).to_have_count(1)
    expect(days(page)).to_have_text(["Friday, March 6, 2020", "Yesterday", "Today"])

    # Away and back: what was missed meanwhile comes with the catch-up, under
    # the same line.
    write_dated_after(database, slug, 6, "cat", "while you were away")
    relay.sockets[-1].close(code=1011, reason="")
    expect(note(page, "you have been disconnected")).to_have_count(1)
    expect(note(page, "you have been reconnected")).to_have_count(1)
    expect(message(page, "while you were away")).to_have_count(1)
    expect(days(page)).to_have_text(["Friday, March 6, 2020", "Yesterday", "Today"])
    expect(days_and_messages(page).last).to_contain_text("while you were away")


def test_older_pages_put_each_days_line_where_that_day_starts(
    pages, make_room, database
):
    slug = make_room("Pages of days")
    zone = ZoneInfo(ZONE)
    first_day = datetime.datetime(2021, 5, 3, 9, 0, tzinfo=zone)
    second_day = datetime.datetime(2021, 5, 4, 9, 0, tzinfo=zone)
    # The newest 50 are all of the second day; the page before holds the
    # first day and the start of the second.
    rows = [("old", "visitor-old", f"first day #{n}", first_day) for n in range(10)]
    rows += [("old", "visitor-old", f"second day #{n}", second_day) for n in range(60)]
    write_dated(database, slug, rows)
    page = pages.open(f"/rooms/{slug}/", timezone_id=ZONE)
    join(page, "reader")
    expect(page.locator("#log li.message")).to_have_count(50)
    expect(days(page)).to_have_text(["Tuesday, May 4, 2021"])

    page.get_by_role("button", name="Load older messages").click()
    expect(page.locator("#log li.message")).to_have_count(70)
    expect(days(page)).to_have_text(["Monday, May 3, 2021", "Tuesday, May 4, 2021"])
    expect(days_and_messages(page).first).to_have_text("Monday, May 3, 2021")
    # The second day's line moved up to its first message.
    second = days(page).nth(1)
    expect(second.locator("xpath=following-sibling::li[1]")).to_contain_text(
        "second day #0"
    )


def test_one_persons_messages_in_a_row_show_the_name_once(pages, make_room):
    slug = make_room("Together")
    eve = pages.open(f"/rooms/{slug}/")
    join(eve, "Eve")
    bob = pages.open(f"/rooms/{slug}/")
    join(bob, "bob")
    expect(note(eve, "bob joined")).to_have_count(1)

    say(eve, "hello")
    expect(message(bob, "hello")).to_have_count(1)
    # Each seen before the next is said: the order is the one sent.
    for page, text in ((eve, "anyone here?"), (bob, "hi Eve"), (eve, "there you are")):
        say(page, text)
        expect(message(bob, text)).to_have_count(1)
        expect(message(eve, text)).to_have_count(1)

    def shown_width(text):
        return (
            message(bob, text)
            .locator(".nickname")
            .evaluate("el => el.getBoundingClientRect().width")
        )

    first, second = message(bob, "hello"), message(bob, "anyone here?")
    expect(first).not_to_have_class(re.compile(r"\bgrouped\b"))
    expect(second).to_have_class(re.compile(r"\bgrouped\b"))
    # Not shown again to the eye...
    assert shown_width("hello") > 10
    assert shown_width("anyone here?") <= 1
    # ...but still there for a screen reader: "Eve anyone here?".
    expect(second.locator(".nickname")).to_have_text("Eve")
    expect(second).to_contain_text(re.compile(r"Eve\s*anyone here\?"))
    # Someone else in between: the name again.
    expect(message(bob, "hi Eve")).not_to_have_class(re.compile(r"\bgrouped\b"))
    expect(message(bob, "there you are")).not_to_have_class(re.compile(r"\bgrouped\b"))
    assert shown_width("there you are") > 10
    # The writer's own page groups the same way.
    expect(message(eve, "anyone here?")).to_have_class(re.compile(r"\bgrouped\b"))


def test_a_reader_scrolled_up_is_told_of_new_messages_and_taken_down(pages, make_room):
    slug = make_room("Backlog", messages=60)
    reader = pages.open(f"/rooms/{slug}/", viewport={"width": 900, "height": 600})
    join(reader, "reader")
    writer = pages.open(f"/rooms/{slug}/")
    join(writer, "writer")
    expect(note(reader, "writer joined")).to_have_count(1)
    newer = reader.locator("#newer")
    log = reader.locator("#log")
    expect(newer).to_be_hidden()

    log.evaluate("el => { el.scrollTop = 0; }")
    say(writer, "are you there?")
    expect(newer).to_be_visible()
    expect(newer).to_have_text("1 new message")
    say(writer, "hello?")
    expect(newer).to_have_text("2 new messages")
    expect(message(reader, "hello?")).to_have_count(1)
    # The reader stays where they were reading.
    expect(message(reader, "Backlog #11")).to_be_in_viewport()
    assert not at_bottom(reader)

    reader.get_by_role("button", name="2 new messages").click()
    expect(newer).to_be_hidden()
    expect(message(reader, "hello?")).to_be_in_viewport()
    assert at_bottom(reader)

    # Up again, and down by themselves: the button goes by itself too.
    log.evaluate("el => { el.scrollTop = 0; }")
    say(writer, "one more")
    expect(newer).to_have_text("1 new message")
    log.hover()
    reader.mouse.wheel(0, 100000)
    expect(newer).to_be_hidden()
    wait_for(reader, lambda: at_bottom(reader), "the log's bottom")

    # At the bottom, the log follows as before, with no button.
    say(writer, "following along")
    expect(message(reader, "following along")).to_be_in_viewport()
    expect(newer).to_be_hidden()


def test_a_hidden_tab_counts_what_others_said_in_its_title(pages, make_room):
    slug = make_room("Quiet corner", messages=3)
    reader = pages.open(f"/rooms/{slug}/", script=HIDDEN_FROM_THE_START)
    relay = Relay(reader)
    join(reader, "reader")
    # The history it came in to is not news.
    expect(reader.locator("#log li.message")).to_have_count(3)
    expect(reader).to_have_title("Quiet corner")

    writer = pages.open(f"/rooms/{slug}/")
    join(writer, "writer")
    for text in ("one", "two", "three"):
        say(writer, text)
    expect(message(reader, "three")).to_have_count(1)
    expect(reader).to_have_title("(3) Quiet corner")

    # Renamed meanwhile: the new name, with the count.
    renamed = {
        "type": "room",
        "room": {
            "slug": slug,
            "name": "Loud corner",
            "topic": "",
            "slow_mode_seconds": 0,
            "members_only": False,
        },
    }
    relay.sockets[-1].send(json.dumps(renamed))
    expect(reader.locator("#room-name")).to_have_text("Loud corner")
    expect(reader).to_have_title("(3) Loud corner")

    # Seen: the name alone, and it stays so while the tab is in view.
    reader.evaluate("setVisibility('visible')")
    expect(reader).to_have_title("Loud corner")
    say(writer, "four")
    expect(message(reader, "four")).to_have_count(1)
    expect(reader).to_have_title("Loud corner")

    # Hidden again, the count starts over.
    reader.evaluate("setVisibility('hidden')")
    say(writer, "five")
    expect(reader).to_have_title("(1) Loud corner")
    # Its own messages are not news to the reader.
    say(reader, "back soon")
    expect(message(writer, "back soon")).to_have_count(1)
    expect(message(reader, "back soon")).not_to_have_class(re.compile(r"\bpending\b"))
    expect(reader).to_have_title("(1) Loud corner")


def test_the_typing_line_fades_and_clears_when_its_stop_is_lost(pages, make_room):
    slug = make_room("Fading")
    page = pages.open(f"/rooms/{slug}/", fake_clock=True)
    relay = Relay(page)
    join(page, "reader")
    typing = page.locator("#typing")
    expect(typing).to_have_css("transition-duration", "0.2s")
    expect(typing).to_have_css("opacity", "0")

    relay.sockets[-1].send(json.dumps({"type": "typing", "nickname": "ann"}))
    expect(typing).to_have_text("ann is typing")
    expect(typing).to_have_css("opacity", "1")
    # No stop comes: the line still goes, a little after the typist's repeat.
    page.clock.run_for(3000)
    expect(typing).to_have_text("ann is typing")
    page.clock.run_for(1500)
    expect(typing).to_have_css("opacity", "0")
    expect(typing).to_have_text("")


def test_the_typing_line_does_not_fade_under_reduced_motion(pages, make_room):
    slug = make_room("Still")
    page = pages.open(f"/rooms/{slug}/", reduced_motion="reduce")
    join(page, "reader")
    expect(page.locator("#typing")).to_have_css("transition-duration", "0s")
