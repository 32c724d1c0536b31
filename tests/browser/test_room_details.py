"""A room changed in the admin, seen on a page open in it: the new name, topic
and title at once, and an archived room's page closed with no one online."""

import uuid

import pytest
from playwright.sync_api import expect

from .conftest import add_staff, sign_in
from .test_room_page import join, note

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def admin_page(pages, database):
    """A superuser signed in to the admin."""
    username = f"ada{uuid.uuid4().hex[:6]}"
    add_staff(database, username, superuser=True)
    page = pages.open("/admin/login/?next=/admin/")
    sign_in(page, username)
    return page


def test_a_rename_and_an_archiving_in_the_admin_reach_an_open_page(
    pages, make_room, database
):
    slug = make_room("Before")
    (room_id,) = database.query("SELECT id FROM chat_room WHERE slug = %s", (slug,))[0]
    reader = pages.open(f"/rooms/{slug}/")
    join(reader, "reader")
    expect(reader.locator("#users li")).to_have_text(["reader"])

    admin = admin_page(pages, database)
    admin.goto(f"{pages.server.http}/admin/chat/room/{room_id}/change/")
    admin.get_by_label("Name").fill("After")
    admin.get_by_label("Topic").fill("Now with a topic")
    admin.get_by_role("button", name="Save and continue editing").click()
    expect(admin.locator(".messagelist")).to_be_visible()

    expect(reader.get_by_role("heading", level=1)).to_have_text("After")
    expect(reader.locator("#room-topic")).to_have_text("Now with a topic")
    expect(reader).to_have_title("After")

    admin.get_by_label("Archived").check()
    admin.get_by_role("button", name="Save and continue editing").click()
    expect(admin.locator(".messagelist")).to_be_visible()
    expect(
        note(
            reader,
            "This room has been archived by a moderator; it accepts no messages.",
        )
    ).to_have_count(1)
    expect(reader.locator("#composer")).to_be_hidden()
    expect(reader.locator("#users li")).to_have_count(0)
    expect(reader.get_by_role("heading", name="Online")).to_be_hidden()
