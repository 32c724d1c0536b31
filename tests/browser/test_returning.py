"""Coming back to a room: the nickname remembered, and no leave or join told
for a reload within the grace (chat/partings.py)."""

import pytest
from playwright.sync_api import expect

from .test_room_page import join, message, note, say, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def connections_of(database, slug, nickname):
    rows = database.query(
        "SELECT COUNT(*) FROM chat_connection c "
        "JOIN chat_member m ON m.id = c.member_id "
        "JOIN chat_room r ON r.id = m.room_id "
        "WHERE r.slug = %s AND m.nickname = %s",
        (slug, nickname),
    )
    return rows[0][0]


def test_a_reload_rejoins_with_the_nickname_and_tells_the_room_nothing(
    pages, make_room, database
):
    slug = make_room("Return")
    eve = pages.open(f"/rooms/{slug}/")
    join(eve, "Eve")
    watcher = pages.open(f"/rooms/{slug}/")
    join(watcher, "watcher")
    expect(note(eve, "watcher joined")).to_have_count(1)

    eve.reload()
    # In again without the prompt, under the same nickname.
    expect(eve.locator("#composer")).to_be_visible()
    expect(eve.locator("#login")).to_be_hidden()
    expect(eve.locator("#users li")).to_have_text(["Eve", "watcher"])
    # The closed socket's grace runs out: the new one holds the nickname.
    wait_for(
        eve,
        lambda: connections_of(database, slug, "Eve") == 1,
        "the reloaded page's socket alone",
        timeout=10,
    )
    say(eve, "back already")
    expect(message(watcher, "back already")).to_have_count(1)
    expect(note(watcher, "Eve left")).to_have_count(0)
    expect(note(watcher, "Eve joined")).to_have_count(0)
    expect(watcher.locator("#users li")).to_have_text(["Eve", "watcher"])


def test_the_nickname_can_be_changed_and_the_new_one_is_remembered(pages, make_room):
    slug = make_room("Rename")
    eve = pages.open(f"/rooms/{slug}/")
    join(eve, "Eve")
    watcher = pages.open(f"/rooms/{slug}/")
    join(watcher, "watcher")

    eve.get_by_role("button", name="Change nickname").click()
    field = eve.get_by_role("textbox", name="What's your nickname?")
    expect(field).to_be_focused()
    expect(field).to_have_value("Eve")
    field.fill("Evelyn")
    field.press("Enter")
    expect(eve.locator("#composer")).to_be_visible()
    # Told at once: a change is no reload.
    expect(note(watcher, "Eve left")).to_have_count(1)
    expect(note(watcher, "Evelyn joined")).to_have_count(1)
    expect(watcher.locator("#users li")).to_have_text(["Evelyn", "watcher"])

    eve.reload()
    expect(eve.locator("#composer")).to_be_visible()
    expect(eve.locator("#users li")).to_have_text(["Evelyn", "watcher"])
