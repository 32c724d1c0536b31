"""
The room page follows the server's settings, handed to it with the protocol
(chat.protocol.client_config): a server with other limits gets a page that keeps
to them, with nothing in static/chat/ to change.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.harness.servers import Daphne, server_env, static_env

from .conftest import Pages
from .test_room_page import join, message_texts, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]

HISTORY_LIMIT = 20
MAX_MESSAGE_LENGTH = 12


@pytest.fixture(scope="module")
def small_server(database, tmp_path_factory, _collected_static):
    """A server of its own, with a shorter history page and shorter messages."""
    daphne = Daphne(
        "browser-small",
        tmp_path_factory.mktemp("browser-small"),
        server_env(
            database,
            "",
            **static_env(),
            CHAT_HISTORY_LIMIT=HISTORY_LIMIT,
            CHAT_MAX_MESSAGE_LENGTH=MAX_MESSAGE_LENGTH,
        ),
    )
    try:
        daphne.start()
        yield daphne
    finally:
        daphne.stop()


@pytest.fixture
def small_pages(browser, small_server):
    pages = Pages(browser, small_server)
    yield pages
    pages.close()
    assert pages.errors == [], pages.errors


def test_older_messages_come_in_pages_of_the_servers_history_limit(
    small_pages, make_room
):
    slug = make_room("Short pages", messages=45)
    page = small_pages.open(f"/rooms/{slug}/")
    join(page, "reader")
    texts = message_texts(page)
    expect(texts).to_have_count(HISTORY_LIMIT)
    expect(texts.first).to_have_text("Short pages #26")

    older = page.get_by_role("button", name="Load older messages")
    with page.expect_response(re.compile(r"/messages\?before=26&limit=20$")):
        older.click()
    expect(texts).to_have_count(2 * HISTORY_LIMIT)
    expect(texts.first).to_have_text("Short pages #6")
    with page.expect_response(re.compile(r"/messages\?before=6&limit=20$")):
        older.click()
    expect(texts).to_have_text([f"Short pages #{n}" for n in range(1, 46)])
    expect(older).to_be_hidden()


def test_the_message_field_keeps_to_the_servers_message_limit(small_pages, make_room):
    slug = make_room("Short words")
    page = small_pages.open(f"/rooms/{slug}/")
    join(page, "writer")
    field = page.locator("#message")
    expect(field).to_have_attribute("maxlength", str(MAX_MESSAGE_LENGTH))
    field.press_sequentially("x" * (MAX_MESSAGE_LENGTH + 5))
    expect(field).to_have_value("x" * MAX_MESSAGE_LENGTH)
    field.press("Enter")
    texts = message_texts(page)
    expect(texts).to_have_text(["x" * MAX_MESSAGE_LENGTH])
    expect(page.locator("#log li.message.pending")).to_have_count(0)

    # Past the field's own limit, the server's refusal is the page's too.
    field.evaluate("el => el.removeAttribute('maxlength')")
    say(page, "y" * (MAX_MESSAGE_LENGTH + 1))
    expect(page.locator("#log li.message.failed")).to_have_count(1)
    expect(texts).to_have_count(2)
