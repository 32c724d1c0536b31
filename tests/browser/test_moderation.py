"""
Moderation on the room page, in a real browser against a real server: authors
edit and delete their own messages; a moderator (a staff user named among the
room's moderators, signed in through the admin) deletes anyone's, and mutes,
kicks and bans. Over both transports: some visitors here have no WebSocket.
"""

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from .conftest import add_staff, sign_in
from .test_http_transport import NO_WEBSOCKET
from .test_room_page import Relay, join, message, note, say, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes]

DELETED = "message deleted"


def add_moderator(database, slug):
    """A staff user (no superuser) named among the room's moderators; their
    username, which is their nickname on the room page."""
    username = f"mia{uuid.uuid4().hex[:6]}"
    add_staff(database, username)
    database.query(
        "INSERT INTO chat_room_moderators (room_id, user_id) VALUES "
        "((SELECT id FROM chat_room WHERE slug = %s), "
        "(SELECT id FROM auth_user WHERE username = %s))",
        (slug, username),
    )
    return username


def moderator_page(pages, database, slug):
    """The moderator's page, signed in through the admin's login, in the
    room: a signed-in user's page joins under their username without asking."""
    username = add_moderator(database, slug)
    page = pages.open("/admin/login/?next=/admin/")
    sign_in(page, username)
    page.goto(f"{pages.server.http}/rooms/{slug}/")
    expect(page.locator("#composer")).to_be_visible()
    return page


def controls(page, text):
    return message(page, text).get_by_role("button")


def deleted(page):
    return page.locator("#log li.message.deleted .text")


def in_dialog(page):
    return page.evaluate(
        "document.getElementById('moderate').contains(document.activeElement)"
    )


def sent_messages(page, text):
    """The message frames with `text` this page sends from now on, by either
    transport (the WebSocket's frames, the HTTP transport's POSTs)."""
    sent = []
    wanted = f'"text":"{text}"'

    def socket(ws):
        ws.on("framesent", lambda payload: wanted in str(payload) and sent.append(1))

    def request(request):
        if request.method == "POST" and wanted in (request.post_data or ""):
            sent.append(1)

    page.on("websocket", socket)
    page.on("request", request)
    return sent


def moderate(page, name, action):
    """Open the moderator's dialog for `action` on `name`'s message."""
    page.get_by_role("button", name=f"{action} {name}", exact=True).first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    return dialog


def test_authors_edit_and_delete_their_own_and_a_moderator_deletes_any(
    pages, make_room, database
):
    slug = make_room("Edits")
    mod = moderator_page(pages, database, slug)
    alice = pages.open(f"/rooms/{slug}/")
    join(alice, "alice")
    bob = pages.open(f"/rooms/{slug}/", script=NO_WEBSOCKET)
    join(bob, "bob")
    everyone = (mod, alice, bob)

    say(alice, "helo wrld")
    for page in everyone:
        expect(message(page, "helo wrld")).to_have_count(1)
    # The author has Edit and Delete; the moderator Delete, Mute, Kick and
    # Ban; anyone else nothing.
    expect(controls(alice, "helo wrld")).to_have_count(2)
    own = [b.get_attribute("aria-label") for b in controls(alice, "helo wrld").all()]
    assert own == ["Edit your message", "Delete your message"]
    expect(controls(mod, "helo wrld")).to_have_count(4)
    moderating = [
        b.get_attribute("aria-label") for b in controls(mod, "helo wrld").all()
    ]
    assert moderating == [
        "Delete the message by alice",
        "Mute alice",
        "Kick alice",
        "Ban alice",
    ]
    expect(controls(bob, "helo wrld")).to_have_count(0)

    # Edited in place, by keyboard: Enter on Edit, the text in a field, Enter.
    edit = alice.get_by_role("button", name="Edit your message")
    edit.focus()
    edit.press("Enter")
    field = alice.get_by_role("textbox", name="Your message")
    expect(field).to_be_focused()
    expect(field).to_have_value("helo wrld")
    field.fill("hello world")
    field.press("Enter")
    for page in everyone:
        edited = message(page, "hello world")
        expect(edited).to_have_count(1)
        expect(edited.locator(".edited")).to_have_text("(edited)")
        expect(edited.locator(".edited")).to_have_attribute(
            "title", re.compile(r"^edited .+")
        )
    expect(edit).to_be_focused()
    # Escape leaves it as it was.
    edit.press("Enter")
    field.fill("never sent")
    field.press("Escape")
    expect(field).to_have_count(0)
    expect(edit).to_be_focused()
    expect(message(alice, "hello world")).to_have_count(1)

    # Deleted by its author: "message deleted" in its place, on every page.
    alice.get_by_role("button", name="Delete your message").click()
    # The focus stays where the message was.
    expect(alice.locator("#log li.message.deleted")).to_be_focused()
    for page in everyone:
        expect(deleted(page)).to_have_text([DELETED])
        expect(page.locator("#log li.message.deleted button")).to_have_count(0)
        expect(message(page, "hello world")).to_have_count(0)

    # Over the HTTP transport the same: bob edits his, the moderator deletes it.
    say(bob, "rude wrds")
    expect(message(alice, "rude wrds")).to_have_count(1)
    bob.get_by_role("button", name="Edit your message").click()
    bob.get_by_role("textbox", name="Your message").fill("rude words")
    bob.get_by_role("button", name="Save").click()
    for page in everyone:
        expect(message(page, "rude words").locator(".edited")).to_have_count(1)
    mod.get_by_role("button", name="Delete the message by bob").click()
    for page in everyone:
        expect(deleted(page)).to_have_text([DELETED, DELETED])
    expect(message(mod, "rude words")).to_have_count(0)

    # A page opened later reads the same from the history.
    late = pages.open(f"/rooms/{slug}/")
    join(late, "late")
    expect(deleted(late)).to_have_text([DELETED, DELETED])


def test_a_moderator_mutes_kicks_and_bans(pages, make_room, database):
    slug = make_room("Sanctions")
    mod = moderator_page(pages, database, slug)
    # eve on the HTTP transport, mallory on a WebSocket.
    eve = pages.open(f"/rooms/{slug}/", script=NO_WEBSOCKET)
    join(eve, "eve")
    mallory = pages.open(f"/rooms/{slug}/")
    join(mallory, "mallory")
    say(eve, "buy cheap pills")
    say(mallory, "you all stink")
    expect(message(mod, "buy cheap pills")).to_have_count(1)
    expect(message(mod, "you all stink")).to_have_count(1)

    # The dialog is modal: opened from the keyboard, focus stays in it, and
    # Escape gives it back to the button that opened it.
    mute = mod.get_by_role("button", name="Mute eve", exact=True)
    mute.focus()
    mute.press("Enter")
    dialog = mod.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("combobox", name="How long")).to_be_focused()
    # How long, reason, Cancel, Mute: and round again.
    for _tab in range(5):
        mod.keyboard.press("Tab")
        assert in_dialog(mod)
    mod.keyboard.press("Shift+Tab")
    mod.keyboard.press("Shift+Tab")
    assert in_dialog(mod)
    expect(dialog.get_by_role("checkbox")).to_have_count(0)
    mod.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(mute).to_be_focused()

    # Muted for 5 minutes: eve still reads; her message is refused, says how
    # long, and is not sent again by itself.
    sent = sent_messages(eve, "let me speak")
    dialog = moderate(mod, "eve", "Mute")
    dialog.get_by_role("combobox", name="How long").select_option(label="5 minutes")
    dialog.get_by_role("textbox", name="Reason").fill("spam")
    dialog.get_by_role("button", name="Mute", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(mod.locator("#log li.moderated")).to_have_text(
        [re.compile(r"^eve is muted until .+")]
    )
    told = eve.locator("#log li.note.error").filter(has_text="muted you")
    expect(told.first).to_be_visible()
    say(eve, "let me speak")
    refused = message(eve, "let me speak")
    expect(refused).to_have_class(re.compile(r"\bfailed\b"))
    expect(refused.locator(".held")).to_have_text("muted — 5 min left")
    expect(refused).to_have_attribute("title", re.compile("spam"))
    expect(refused.get_by_role("button", name="Send again")).to_be_visible()
    say(mod, "calm down")
    expect(message(eve, "calm down")).to_have_count(1)
    expect(message(mod, "let me speak")).to_have_count(0)

    # Banned for good, from every room: no way back, not even by reloading.
    dialog = moderate(mod, "mallory", "Ban")
    dialog.get_by_role("combobox", name="How long").select_option(label="For good")
    dialog.get_by_role("textbox", name="Reason").fill("abuse")
    dialog.get_by_role("checkbox", name="From every room").check()
    expect(
        dialog.get_by_role("checkbox", name="Also their address")
    ).not_to_be_checked()
    dialog.get_by_role("button", name="Ban", exact=True).click()
    expect(mod.locator("#log li.moderated").last).to_have_text(
        "mallory is banned from every room for good"
    )

    def shows_banned(page):
        removed = page.locator("#removed")
        expect(removed).to_be_visible()
        expect(removed.locator("#removed-title")).to_have_text(
            "You are banned from this room."
        )
        expect(removed.locator("#removed-detail")).to_contain_text("abuse")
        expect(page.get_by_role("button", name="Join again")).to_be_hidden()
        expect(page.locator("#composer")).to_be_hidden()
        expect(page.locator("#login")).to_be_hidden()

    shows_banned(mallory)
    expect(note(mod, "mallory left")).to_have_count(1)
    sockets = []
    mallory.on("websocket", lambda ws: sockets.append(ws))
    # Back under the remembered nickname: still banned.
    mallory.reload()
    shows_banned(mallory)
    wait_for(mallory, lambda: len(sockets) == 1, "the remembered nickname's join")
    # Under another nickname: banned all the same.
    mallory.evaluate("localStorage.clear()")
    sockets.clear()
    mallory.reload()
    field = mallory.locator("#nickname")
    expect(field).to_be_focused()
    field.press_sequentially("mallory2")
    field.press("Enter")
    shows_banned(mallory)
    wait_for(mallory, lambda: len(sockets) == 1, "the one socket of the join")
    wait_for(mallory, lambda: sockets[0].is_closed(), "the socket's close")

    # Kicked: eve's page says so, and Join again brings her back.
    dialog = moderate(mod, "eve", "Kick")
    expect(dialog.get_by_role("combobox")).to_have_count(0)
    dialog.get_by_role("textbox", name="Reason").fill("cool off")
    dialog.get_by_role("button", name="Kick", exact=True).click()
    expect(mod.locator("#log li.moderated").last).to_have_text(
        "eve was taken out of the room"
    )
    removed = eve.locator("#removed")
    expect(removed).to_be_visible()
    expect(removed.locator("#removed-title")).to_have_text(
        "A moderator took you out of this room."
    )
    expect(removed.locator("#removed-detail")).to_contain_text("cool off")
    expect(eve.locator("#composer")).to_be_hidden()
    again = eve.get_by_role("button", name="Join again")
    expect(again).to_be_focused()
    expect(note(mod, "eve left")).to_have_count(1)
    again.click()
    expect(eve.locator("#composer")).to_be_visible()
    expect(removed).to_be_hidden()
    expect(note(eve, "you have been reconnected")).to_have_count(1)
    expect(note(mod, "eve joined")).to_have_count(1)
    say(mod, "welcome back")
    expect(message(eve, "welcome back")).to_have_count(1)

    # All this while, eve's refused message went once, and mallory's page
    # tried no other socket.
    assert len(sent) == 1
    assert len(sockets) == 1
    expect(note(mod, "mallory2 joined")).to_have_count(0)


def test_the_rooms_rules_are_shown_and_a_message_over_slow_mode_waits(
    pages, make_room, database
):
    slug = make_room("Slow")
    database.query(
        "UPDATE chat_room SET slow_mode_seconds = 30 WHERE slug = %s", (slug,)
    )
    page = pages.open(f"/rooms/{slug}/")
    relay = Relay(page)
    join(page, "sam")
    rules = page.locator("#room-rules")
    expect(rules).to_have_text("Slow mode: one message every 30 s.")

    say(page, "first")
    expect(message(page, "first")).not_to_have_class(re.compile(r"\bpending\b"))
    say(page, "second")
    held = message(page, "second")
    expect(held).to_have_class(re.compile(r"\bfailed\b"))
    expect(held.locator(".held")).to_have_text(
        re.compile(r"^slow mode — (29|30) s left$")
    )
    # It counts down.
    expect(held.locator(".held")).to_have_text(
        re.compile(r"^slow mode — 2[0-8] s left$"), timeout=3000
    )

    # A moderator changed the room in the admin: the page follows.
    details = {
        "slug": slug,
        "name": "Renamed",
        "topic": "Be nice",
        "slow_mode_seconds": 0,
        "members_only": True,
    }
    room = json.dumps({"type": "room", "room": details})
    relay.sockets[-1].send(room)
    expect(page.get_by_role("heading", level=1)).to_have_text("Renamed")
    expect(page.locator("#room-topic")).to_have_text("Be nice")
    expect(page).to_have_title("Renamed")
    expect(rules).to_have_text("Only signed-in members may post.")
    # Not sent again by itself meanwhile: refused once.
    assert sum('"code":"slow_mode"' in frame for frame in relay.seen) == 1
