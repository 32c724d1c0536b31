"""
Screenshots of the lobby and a busy room, at a desktop's and a 390 px phone's
width, light and dark. They go to CHAT_SCREENSHOTS_DIR when it is set (how
docs/screenshots/ is made: see the README), else to the test's own folder.
A server and database of their own: the lobby shows this module's rooms, not
every other test's.
"""

import os
import struct
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.harness.database import shared_database
from tests.harness.servers import Daphne, server_env, static_env

from .conftest import write_messages
from .test_room_page import PENDING, join, message, say

pytestmark = [pytest.mark.browser, pytest.mark.processes]

SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
CHAT = [
    ("Ana", "Morning! Did the deploy go out?"),
    ("Jun", "Yes, at 9. Nobody noticed a thing."),
    ("Ana", "That was the idea."),
    ("Léa", "Je relis la doc du protocole, elle est claire."),
    ("Jun", "The Korean page reads well too: 참여자 목록도 잘 보여요."),
    ("Sam", "هل يعمل النص من اليمين إلى اليسار؟"),
    ("Léa", "Oui, dans le bon sens."),
]


@pytest.fixture(scope="module")
def database(chromium, tmp_path_factory):
    with shared_database(tmp_path_factory) as database:
        yield database


@pytest.fixture(scope="module")
def server(database, tmp_path_factory, _collected_static):
    # The same people join again test after test, each time a new visitor:
    # no grace holding their nicknames for the last one.
    env = server_env(database, "", CHAT_PRESENCE_GRACE_SECONDS=0, **static_env())
    daphne = Daphne("screenshots", tmp_path_factory.mktemp("screenshots"), env)
    try:
        daphne.start()
        yield daphne
    finally:
        daphne.stop()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    chosen = os.environ.get("CHAT_SCREENSHOTS_DIR")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def png_size(path):
    # A PNG's width and height, big-endian, after its signature and IHDR tag.
    return struct.unpack(">II", path.read_bytes()[16:24])


@pytest.fixture(scope="module")
def busy_room(database):
    slug = "tea-room"
    if not database.query("SELECT 1 FROM chat_room WHERE slug = %s", (slug,)):
        database.create_room(slug, "Tea room")
        database.query(
            "UPDATE chat_room SET topic = %s WHERE slug = %s",
            ("Anything goes, in any language.", slug),
        )
        for seq, (nickname, text) in enumerate(CHAT, start=1):
            write_messages(database, slug, {seq: text}, nickname=nickname)
    return slug


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("size", sorted(SIZES))
def test_screenshots(pages, busy_room, folder, scheme, size):
    width, height = SIZES[size]
    options = {"color_scheme": scheme, "viewport": {"width": width, "height": height}}
    lobby = pages.open("/", **options)
    expect(lobby.get_by_role("link", name="Tea room")).to_be_visible()
    shot = folder / f"lobby-{size}-{scheme}.png"
    lobby.screenshot(path=shot, animations="disabled")
    assert png_size(shot) == (width, height)

    others = [pages.open(f"/rooms/{busy_room}/", **options) for _ in range(2)]
    for page, name in zip(others, ["Jun", "Léa"], strict=True):
        join(page, name)
    room = pages.open(f"/rooms/{busy_room}/", **options)
    join(room, "Ana")
    # Said once; the next screenshots show it in the history.
    if not message(room, "Tea at four?").count():
        say(room, "Tea at four?")
    expect(message(room, "Tea at four?")).not_to_have_class(PENDING)
    others[0].locator("#message").press_sequentially("Sure")
    expect(room.locator("#typing")).to_contain_text("Jun")
    shot = folder / f"room-{size}-{scheme}.png"
    room.screenshot(path=shot, animations="disabled")
    assert png_size(shot) == (width, height)
    for page in [*others, room]:
        page.close()
